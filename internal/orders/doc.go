// Package orders is the order domain: the order:place task and its payload
// (Order, with its strict codec and validation), the row every order ends
// in (Record and its statuses and reasons), and the central rule of the
// flow, written once (Flow): the orders row is the arbiter, the first
// terminal write wins, and an order's holds follow the row that stands
// (docs/design.md).
//
// It states what it needs from the stock gate and the order store as small
// interfaces (Holds, Rows) and must not reach Redis, Postgres or Asynq
// itself: internal/stock, internal/orderstore and internal/worker do. It
// builds the task (NewTask), and the public stockgate.Client enqueues it. The
// task and payload contracts (README "Contracts") change only with a
// migration path.
package orders
