// Package hostile holds end-to-end tests that feed the whole server (as
// harness.Start wires it) the input an attacker would: thousands of slow
// connections, literals at and past the limits, a literal whose data is
// another command, MIME nested 100,000 deep, a million header fields,
// pathological LIST patterns, SEARCH TEXT over a large mailbox, commands
// pipelined behind STARTTLS/STLS, control characters in EHLO, AUTH timing
// and password guessing.
//
// Implementation notes:
//
//   - Each test states its memory budget in a comment and asserts it. The
//     server runs in the test process, so memory is measured as the growth
//     of the Go heap and stacks (runtime.MemStats HeapInuse + StackInuse
//     after a GC) over the hostile phase; client-side buffers of the test
//     are counted too, which makes the budgets conservative.
//   - The clients are raw TCP (textConn) so that the test controls every
//     byte, including what is pipelined in one write.
//   - Sizes that would make `make test` slow come from the environment:
//     POSTHORN_HOSTILE_SEARCH_N (messages searched, 10,000 by default,
//     100,000 in `make crashtest`), POSTHORN_HOSTILE_SLOW (slow connections,
//     2,000).
package hostile
