// Package fuzz holds the fuzz targets that span components: the SMTP
// (port 25 and submission) and IMAP sessions of the whole server as
// `posthorn serve` wires it, the message parser behind the store (ENVELOPE
// and BODYSTRUCTURE computed at append), address resolution (mda.Resolve)
// and configuration loading (config.Parse). The POP3 session and the IMAP
// mailbox-name and LIST pattern targets live beside their code
// (maa/pop3, maa/imap).
//
// Implementation notes:
//
//   - Session targets start one server per fuzzing process (server.New
//     and Start on 127.0.0.1:0, as the harness does) with a logger that
//     records any "panic" log line: go-smtp and go-imap recover a panic
//     per connection and only log it, so the log is where a crash shows.
//     Each input is written on a fresh connection, the write side is then
//     closed, and every reply is read until the server closes; a reply
//     must come within a bounded time.
//   - The limiter's delays are turned off (set before the first login) so
//     that wrong passwords in inputs do not slow fuzzing down.
//   - Seed corpora are in testdata/fuzz/<Target>/ in the go test fuzz v1
//     format; `go test` runs them as regression tests, `go test -fuzz`
//     grows them.
package fuzz
