// Package chaos proves stockgate's promise under faults: no oversell, no
// lost order, no leaked stock. Its tests run the real worker, enqueue and
// stockctl binaries (the worker built with the failpoints tag) against
// Redis and Postgres servers they start themselves, then kill processes,
// restart servers and flush scripts in the middle of a sale.
//
// Every scenario ends with the same check (see cluster.check) and prints
// one line of figures starting with "chaos:". The quick scenarios run in
// make test; STOCKGATE_CHAOS=all (make chaos) runs the ones that wait for
// Asynq's lease recovery too. docs/reliability.md has the matrix.
//
// TestSoak plays a schedule of sales and overlapping faults drawn from a
// seed (make soak SEED=S DURATION=D), checking I1 to I5 and reconcile after
// each quiet period; make test runs a one-minute one.
package chaos
