// Package orders is the order domain: the order:place task and its payload
// (Order, with its strict codec and validation), the order:confirm and
// order:cancel tasks of a checkout (Action), the row every order ends in
// (Record, its statuses and reasons, and the moves between them: CanMove,
// Transition), and the central rule of the flow, written once (Flow): the
// orders row is the arbiter, the first write (or move) wins, and an order's
// holds follow the row that stands (docs/design.md).
//
// It states what it needs from the stock gate and the order store as small
// interfaces (Holds, Rows) and must not reach Redis, Postgres or Asynq
// itself: internal/stock, internal/orderstore and internal/worker do. It
// builds the task (NewTask), and the public stockgate.Client enqueues it. The
// task and payload contracts (README "Contracts") change only with a
// migration path.
package orders
