// Package mda is the mail delivery agent: it resolves recipients (domains,
// aliases, catch-all, user+tag), applies quotas, adds Return-Path and
// Delivered-To, and writes messages into mailboxes through the store.
//
// CONTRACT (filled in by the mda implementation; signatures are fixed).
package mda

import (
	"context"
	"errors"
	"log/slog"

	"github.com/posthorn/posthorn/store"
)

var (
	// ErrNotOurDomain: the domain is not served here (550 5.7.1 on port 25).
	ErrNotOurDomain = errors.New("domain not served here")
	// ErrUnknownUser: our domain, no such user or alias (550 5.1.1).
	ErrUnknownUser = errors.New("no such user")
	// ErrBadAddress: a local part we never route (%, !, quotes, source routes).
	ErrBadAddress = errors.New("address not accepted")
	// ErrAliasLoop: an alias expands into itself or too deep.
	ErrAliasLoop = errors.New("alias loop")
)

// Queue takes mail for remote addresses (aliases that forward outside).
// The outbound queue implements it.
type Queue interface {
	Enqueue(ctx context.Context, e store.QueueEntry, body []byte) (store.QueueEntry, error)
}

// Route is where one recipient address leads.
type Route struct {
	Accounts []string // local accounts
	Remote   []string // remote addresses (alias targets)
}

// Envelope is one message's SMTP envelope.
type Envelope struct {
	From       string   // reverse path, "" for <>
	Recipients []string // as given in RCPT TO, each accepted by Resolve
	Junk       bool     // deliver to Junk instead of INBOX
}

// Result says what Deliver did.
type Result struct {
	Delivered []store.Delivered
	Queued    []string // remote addresses queued
}

// Agent delivers mail.
type Agent struct {
	Store  store.Store
	Queue  Queue // nil: remote alias targets are refused
	Logger *slog.Logger
}

// Resolve says where an address leads, or why it does not.
func (a *Agent) Resolve(address string) (Route, error) { panic("not implemented") }

// Deliver writes body (CRLF, without our per-recipient headers) to every
// local recipient in one durable transaction and queues remote ones.
// store.ErrOverQuota is returned when an account is full (452 4.2.2).
func (a *Agent) Deliver(ctx context.Context, env Envelope, body []byte) (Result, error) {
	panic("not implemented")
}
