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
// Submit validates the order as the workers do and enqueues the order:place
// task (README "Contracts") with the order id as its task id, the trace
// context of ctx in its headers, and the configured retention and retries.
// Status and Wait read the order's row in the workers' Postgres, so a
// client that calls them needs Config.DatabaseURL.
//
// The package owns the producer's side of the task contract and nothing
// else: it must not decide orders or change stock. It hides Asynq, go-redis
// and pgx; internal/orders, internal/orderstore and internal/stock do the
// work underneath.
package stockgate
