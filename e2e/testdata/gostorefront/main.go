// Command storefront places one order with the stockgate Go client and
// waits for its outcome: go run . [SKU]
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/stockgate/stockgate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "storefront:", err)
		os.Exit(1)
	}
}

func run() error {
	sku := "DEMO-SKU"
	if len(os.Args) > 1 {
		sku = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The workers' Redis and Postgres, as in their REDIS_URL and DATABASE_URL.
	c, err := stockgate.NewClient(ctx, stockgate.Config{
		RedisURL:    os.Getenv("REDIS_URL"),
		DatabaseURL: os.Getenv("DATABASE_URL"),
	})
	if err != nil {
		return err
	}
	defer c.Close()

	id := "go-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	err = c.Submit(ctx, stockgate.Order{
		OrderID:    id,
		CustomerID: "c-1",
		Lines:      []stockgate.Line{{SKU: sku, Qty: 1}},
	})
	if err != nil {
		return err
	}
	st, err := c.Wait(ctx, id) // returns once a worker has decided the order
	if err != nil {
		return err
	}
	fmt.Printf("order %s: %s %s\n", st.OrderID, st.State, st.Reason)
	return nil
}
