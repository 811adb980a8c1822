//go:build !linux

package imap

import "net"

// quickAck: TCP_QUICKACK is Linux's; elsewhere nothing.
func quickAck(net.Conn) {}
