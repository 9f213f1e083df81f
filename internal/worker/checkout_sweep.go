package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stockgate/stockgate/internal/orders"
)

// SweepStore is what the sweeper needs from the order store
// (*orderstore.Store): the handler's Store, and the checkouts to end.
type SweepStore interface {
	Store
	// ExpiredHeld lists up to limit held rows whose deadline has passed.
	ExpiredHeld(ctx context.Context, now time.Time, limit int) ([]orders.Record, error)
	// Unreturned lists up to limit cancellations after the sale whose
	// units are not back yet.
	Unreturned(ctx context.Context, limit int) ([]orders.Record, error)
}

// sweepCheckouts ends the checkouts whose deadline has passed in Postgres
// (held to expired, their holds given back) and finishes the cancellations
// after the sale that a dead worker left with their units still sold. Both
// go through the flow, so a confirm or a cancel racing the sweep is settled
// by the row: the first move wins.
func (s *Sweeper) sweepCheckouts(ctx context.Context, res *SweepResult) error {
	now := s.cfg.Now()
	held, err := s.store.ExpiredHeld(ctx, now, s.cfg.Batch)
	if err != nil {
		return err
	}
	var errs []error
	for _, row := range held {
		if _, moved, err := s.flow.Expire(ctx, row.OrderID, now); err != nil {
			errs = append(errs, fmt.Errorf("expire checkout %s: %w", row.OrderID, err))
		} else if moved {
			res.CheckoutsExpired++
		}
	}
	unreturned, err := s.store.Unreturned(ctx, s.cfg.Batch)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, row := range unreturned {
		if _, err := s.flow.Settle(ctx, row, row.SKUs()); err != nil {
			errs = append(errs, fmt.Errorf("give back %s: %w", row.OrderID, err))
		} else {
			res.Returned++
		}
	}
	return errors.Join(errs...)
}

// settleHeld handles an expired Redis hold whose order stands held: a
// checkout. Its Redis deadline is never before its Postgres one, so the
// checkout is due as well, and it expires; if its deadline in Postgres is
// still ahead (another worker's clock ran early), it is left for a later
// sweep. Either way the holds follow the row that stands.
func (s *Sweeper) settleHeld(ctx context.Context, row orders.Record, res *SweepResult) error {
	_, moved, err := s.flow.Expire(ctx, row.OrderID, s.cfg.Now())
	if moved {
		res.CheckoutsExpired++
	}
	return err
}
