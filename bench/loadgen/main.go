// Command loadgen runs the same mail workload against any server that
// speaks SMTP, IMAP and POP3, and prints the figures side by side. It is
// the load generator of `make bench-peers` (bench/peers/run.sh), which runs
// it once against Posthorn and once against Postfix delivering into
// Dovecot on the same machine.
//
//	loadgen run -name NAME -smtp ADDR -imap ADDR -pop3 ADDR -pid PID[,PID] -out FILE
//	loadgen table -a posthorn.json -b peers.json
//	loadgen ports N
//	loadgen dns [-addr 127.0.0.1:0]   # NXDOMAIN for everything; prints its address
//	loadgen hash PASSWORD              # Posthorn's argon2id hash, for Dovecot's passwd-file
//
// Implementation notes:
//
//   - The protocol clients are written here on raw TCP (no client library)
//     so that both servers see byte-for-byte the same commands, and so that
//     the header sync is exactly Thunderbird's command.
//   - SMTP acceptance opens a new connection per message, as a remote MTA
//     does. A server may answer 250 before the message is in the mailbox
//     (Postfix queues, then hands over to Dovecot over LMTP), so after each
//     load step loadgen waits until IMAP STATUS shows every accepted
//     message before the next step starts: a backlog never leaks into the
//     next figure.
//   - Memory is the sum over the server's process tree (the given PIDs and
//     all their descendants) of Pss from /proc/PID/smaps_rollup, so that
//     shared pages of a multi-process server are counted once.
//   - Sizes come from environment variables (see envInt in config.go) so
//     that a quick run and a full run use the same code.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "table":
		err = tableCmd(os.Args[2:])
	case "ports":
		err = portsCmd(os.Args[2:])
	case "dns":
		err = dnsCmd(os.Args[2:])
	case "hash":
		err = hashCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen run|table|ports|dns|hash ...")
	os.Exit(2)
}
