package orders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/stock"
)

// Defaults for SweeperConfig.
const (
	DefaultSweepInterval = 10 * time.Second
	DefaultSweepBatch    = 500
)

// SweeperConfig configures a Sweeper. The zero value is usable.
type SweeperConfig struct {
	Interval time.Duration // between sweeps; default DefaultSweepInterval
	Batch    int           // most holds looked at per sweep; default DefaultSweepBatch
	Now      func() time.Time
	Logger   *slog.Logger
}

// Sweeper settles holds that outlived their deadline. Such a hold belongs to
// an order whose handler died or gave up: the order gets an expired row if it
// has none, and the hold then follows whatever row stands. Every step is
// idempotent and the row is the arbiter, so any number of sweepers may run
// at once, beside any number of handlers.
type Sweeper struct {
	gate  *stock.Gate
	store *Store
	cfg   SweeperConfig
	log   *slog.Logger
	tr    trace.Tracer
	swept metric.Int64Counter
}

// NewSweeper returns a Sweeper.
func NewSweeper(gate *stock.Gate, store *Store, cfg SweeperConfig) (*Sweeper, error) {
	cfg.Interval = cmp.Or(cfg.Interval, DefaultSweepInterval)
	cfg.Batch = cmp.Or(cfg.Batch, DefaultSweepBatch)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	swept, err := otel.Meter(instrumentation).Int64Counter("stockgate.holds.swept",
		metric.WithDescription("Expired holds settled by the sweeper, by action (committed or released)"))
	if err != nil {
		return nil, err
	}
	return &Sweeper{gate: gate, store: store, cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()),
		tr: otel.Tracer(instrumentation), swept: swept}, nil
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Orders    int // orders with an expired hold
	Expired   int // expired rows this sweep inserted
	Committed int // orders whose holds were committed (their row was confirmed)
	Released  int // orders whose holds were released
}

// Run sweeps every Interval until ctx is done.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if res, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "sweep failed", "err", err)
		} else if res.Orders > 0 {
			s.log.InfoContext(ctx, "swept expired holds", "orders", res.Orders, "expired", res.Expired,
				"committed", res.Committed, "released", res.Released)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce settles up to Batch expired holds.
func (s *Sweeper) SweepOnce(ctx context.Context) (SweepResult, error) {
	ctx, span := s.tr.Start(ctx, "holds.sweep")
	defer span.End()
	var res SweepResult
	holds, err := s.gate.ExpiredHolds(ctx, s.cfg.Now(), s.cfg.Batch)
	if err != nil {
		return res, err
	}
	byOrder := map[string][]string{}
	var order []string
	for _, h := range holds {
		if _, ok := byOrder[h.OrderID]; !ok {
			order = append(order, h.OrderID)
		}
		byOrder[h.OrderID] = append(byOrder[h.OrderID], h.SKU)
	}
	var errs []error
	for _, id := range order {
		if err := s.settle(ctx, id, byOrder[id], &res); err != nil {
			errs = append(errs, fmt.Errorf("settle %s: %w", id, err))
		}
	}
	res.Orders = len(order)
	span.SetAttributes(attribute.Int("holds.orders", res.Orders), attribute.Int("holds.expired", res.Expired))
	return res, errors.Join(errs...)
}

func (s *Sweeper) settle(ctx context.Context, orderID string, skus []string, res *SweepResult) error {
	row, err := s.store.Get(ctx, orderID)
	if errors.Is(err, ErrNotFound) {
		// The row decides, not the hold: if a slow handler inserts confirmed
		// first, Decide returns that row and the hold is committed below.
		var inserted bool
		row, inserted, err = s.store.Decide(ctx, Record{
			OrderID: orderID, Status: StatusExpired, Reason: ReasonHoldExpired,
			Detail: "hold passed its deadline before the order was decided",
		})
		if inserted {
			res.Expired++
		}
	}
	if err != nil {
		return err
	}
	if row.Status == StatusConfirmed {
		// Commit what the hold recorded on the SKUs found expired; the row's
		// own lines may name more, and committing those is idempotent too.
		all := skus
		for _, l := range row.Lines {
			all = append(all, l.SKU)
		}
		if _, err := s.gate.Commit(ctx, orderID, all); err != nil {
			return err
		}
		res.Committed++
		s.swept.Add(ctx, int64(len(skus)), metric.WithAttributes(attribute.String("action", "committed")))
		return nil
	}
	if _, err := s.gate.Release(ctx, orderID, skus); err != nil {
		return err
	}
	res.Released++
	s.swept.Add(ctx, int64(len(skus)), metric.WithAttributes(attribute.String("action", "released")))
	return nil
}
