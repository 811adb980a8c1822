// Package crash proves DESIGN.md's first promise, "250 means durable", on
// the real binary: it starts `posthorn serve`, sends mail over port 25 to
// local accounts and over submission (STARTTLS, AUTH) to remote
// recipients, kills the process with SIGKILL at random moments and
// restarts it, and at the end checks that every message that got a 250 is
// in a mailbox or was delivered to the remote test MX.
//
// Implementation notes:
//
//   - The binary is built with `go build` into the test's temporary
//     directory and started with a generated configuration whose listeners
//     are all on 127.0.0.1:0; the bound addresses are read from
//     data_dir/listeners.json (server.AddrsFile), which serve writes once
//     every listener is bound. Accounts are created offline with the CLI
//     (`posthorn domain add`, `posthorn user add --password-stdin`) before
//     the first start, as an administrator would.
//   - A driver retries each message until it gets a 250, as a real MTA or
//     mail client would; a message whose 250 was lost with the crash may
//     then be stored twice. Duplicates are counted and reported; they are
//     allowed (the promise is about loss), losses are not.
//   - Kills are paced by progress: the k-th kill happens when about k/(K+1)
//     of the messages are acknowledged, after a random delay, so a run
//     always does the K kills it was asked for, spread over the whole run,
//     at moments unrelated to the protocol state.
//   - Local mail is checked after a clean final stop by opening the store
//     offline (store.Open) and reading every message's X-Crash-ID header;
//     remote mail by what the test MX (a go-smtp server on loopback, found
//     through a loopback DNS server's MX record) received.
//   - TestDiskFull runs serve with its data directory on a 40 MiB tmpfs,
//     mounted in a user and mount namespace of the test's own (`unshare
//     --user --map-root-user --mount`, no privilege needed), fills it, and
//     checks the replies below the free-space reserve and on a full disk
//     (452 4.3.1, NO [OVERQUOTA]), that expunging still works, that
//     nothing acknowledged is lost, and that mail goes in again once
//     there is room, with no restart.
//   - Sizes come from the environment so that `make test` runs a short
//     form and `make crashtest` the long one: POSTHORN_CRASH_N (messages),
//     POSTHORN_CRASH_KILLS, POSTHORN_CRASH_WORKERS,
//     POSTHORN_CRASH_OUTBOUND_N and POSTHORN_CRASH_OUTBOUND_KILLS.
package crash
