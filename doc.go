// Package stockgate is the Go client of stockgate for storefront backends:
// it submits orders to the workers' queue, tells an order's status, and
// waits for its outcome.
//
//	c, err := stockgate.NewClient(ctx, stockgate.Config{
//		RedisURL:    "redis://127.0.0.1:6379/0",
//		DatabaseURL: "postgres://postgres@127.0.0.1:5432/stockgate",
//	})
//	...
//	defer c.Close()
//	err = c.Submit(ctx, stockgate.Order{OrderID: "o-1", CustomerID: "c-1",
//		Lines: []stockgate.Line{{SKU: "SKU-1", Qty: 2}}})
//	st, err := c.Wait(ctx, "o-1") // st.State is confirmed, rejected, failed or expired
//
// A checkout holds its stock until it is paid: submit it with a Hold, Wait
// for it to be held, take the payment, then Confirm it (or Cancel it; a
// confirmed order can be cancelled after its sale too):
//
//	err = c.Submit(ctx, stockgate.Order{OrderID: "o-2", CustomerID: "c-1",
//		Lines: []stockgate.Line{{SKU: "SKU-1", Qty: 1}}, Hold: 10 * time.Minute})
//	st, err = c.Wait(ctx, "o-2")    // st.State is held, or rejected
//	st, err = c.Confirm(ctx, "o-2") // confirmed; or ErrTooLate with st.State expired or cancelled
//
// Submit validates the order as the workers do and enqueues the order:place
// task (README "Contracts") with the order id as its task id, the trace
// context of ctx in its headers, and the configured retention and retries;
// Confirm and Cancel enqueue order:confirm and order:cancel the same way,
// then wait for the move.
// Status and Wait read the order's row in the workers' Postgres, so a
// client that calls them needs Config.DatabaseURL.
//
// The package owns the producer's side of the task contract and nothing
// else: it must not decide orders or change stock. It hides Asynq, go-redis
// and pgx; internal/orders, internal/orderstore and internal/stock do the
// work underneath.
package stockgate
