package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orders"
)

// moveFlags are confirm's and cancel's.
type moveFlags struct {
	id      string
	reason  string
	timeout time.Duration
}

// parseMove reads confirm ID or cancel ID [--reason R], before anything
// connects.
func parseMove(cmd string, args []string, stderr io.Writer) (moveFlags, error) {
	var f moveFlags
	synopsis := "confirm ID [--timeout D]"
	if cmd == "cancel" {
		synopsis = "cancel ID [--reason R] [--timeout D]"
	}
	pos, err := config.Subcommand("enqueue", cmd, synopsis, stderr, args, func(fs *flag.FlagSet) {
		if cmd == "cancel" {
			fs.StringVar(&f.reason, "reason", "", fmt.Sprintf("why, in at most %d characters on one line (kept as the order's detail)",
				orders.MaxActionReason))
		}
		fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for a worker to move the order")
	})
	if err != nil {
		return f, err
	}
	if len(pos) != 1 {
		return f, fmt.Errorf("%w: want %s ID", config.ErrUsage, cmd)
	}
	f.id = pos[0]
	if err := (orders.Action{OrderID: f.id, Reason: f.reason}).Validate(); err != nil {
		return f, fmt.Errorf("%w: %v", config.ErrUsage, err)
	}
	if f.timeout <= 0 {
		return f, fmt.Errorf("%w: --timeout must be positive", config.ErrUsage)
	}
	return f, nil
}

// moveOrder confirms or cancels an order through the client, which waits
// for a worker to move it, and prints the state that stands then: one
// line, "order ID: STATUS [REASON] [(DETAIL)]". Too late, not found, or no
// move within --timeout is an error (exit 1) after that line.
func moveOrder(ctx context.Context, e *env, cmd string, args []string) error {
	f, err := parseMove(cmd, args, e.stderr)
	if err != nil {
		return err
	}
	if err := e.connectWithDatabase(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var st stockgate.Status
	if cmd == "confirm" {
		st, err = e.client.Confirm(wctx, f.id)
	} else {
		st, err = e.client.Cancel(wctx, f.id, f.reason)
	}
	if st.OrderID != "" {
		line := fmt.Sprintf("order %s: %s", st.OrderID, st.State)
		if st.Reason != "" {
			line += " " + st.Reason
		}
		if st.Detail != "" {
			line += " (" + st.Detail + ")"
		}
		fmt.Fprintln(e.stdout, line)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("no worker moved order %s within %v (it is %s); the %s task stays queued", f.id, f.timeout, st.State, cmd)
	}
	return err
}

// connectWithDatabase is connect with the Postgres the client needs to wait
// for a row.
func (e *env) connectWithDatabase(ctx context.Context) error {
	e.clientConfig.DatabaseURL = e.conn.DatabaseURL
	return e.connect(ctx)
}
