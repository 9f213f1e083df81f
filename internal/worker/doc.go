// Package worker is the consumer side of the orders queue: the Handler that
// runs the flow of one order:place task (validate, look up, rate-limit,
// reserve, record, commit; docs/design.md "The flow of one order"), its
// ProcessAction for order:confirm and order:cancel (docs/design.md
// "Checkout"), and the Sweeper that settles holds past their deadline,
// checkouts past theirs, unfinished give-backs, and orders whose task
// Asynq archived undecided. Both end every decision through orders.Flow, so
// the rule "holds follow the row that stands" lives in one place.
//
// It states the small interfaces it needs from the stock gate, the order
// store, the catalogue and the sweeper's lease (Gate, Store, Catalog,
// Limiter, SweepGate, IndexGate, Lease) where it uses them; cmd/worker wires the real ones. It must not parse payloads
// itself (internal/orders does), change stock except through the gate, or
// write rows except through the store.
package worker
