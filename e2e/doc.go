// Package e2e runs the real worker, enqueue and stockctl binaries as
// processes against a private redis-server and a private Postgres database,
// and checks what an operator or a storefront would see: exit codes, one-line
// errors, JSON outputs, traces and the invariants of DESIGN.md.
//
// It holds tests only, and must not touch the machine's shared Redis or
// Postgres data.
package e2e
