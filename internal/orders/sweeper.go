package orders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
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
	// Archive, when set, lets the sweeper find order tasks that Asynq
	// archived without a last attempt (their lease kept expiring), so that
	// those orders too end with a row.
	Archive *asynq.Inspector
	Now     func() time.Time
	Logger  *slog.Logger
}

// ReasonTaskArchived is recorded for an order whose task Asynq archived
// before any attempt could decide it.
const ReasonTaskArchived = "task_archived"

// archivedPerSweep bounds the archived tasks one sweep reads.
const archivedPerSweep = 1000

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
	Archived  int // failed rows recorded for archived tasks
}

// Run sweeps every Interval until ctx is done.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if res, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "sweep failed", "err", err)
		} else if res.Orders > 0 || res.Archived > 0 {
			s.log.InfoContext(ctx, "swept expired holds", "orders", res.Orders, "expired", res.Expired,
				"committed", res.Committed, "released", res.Released, "archived_failed", res.Archived)
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
	if s.cfg.Archive != nil {
		if err := s.sweepArchived(ctx, &res); err != nil {
			errs = append(errs, err)
		}
	}
	span.SetAttributes(attribute.Int("holds.orders", res.Orders), attribute.Int("holds.expired", res.Expired),
		attribute.Int("holds.archived", res.Archived))
	return res, errors.Join(errs...)
}

// sweepArchived records failed, after releasing its holds, every order
// whose task sits archived with no row: a worker that died on the task's
// last attempt (or kept losing its lease) never got to. Archived tasks with
// no usable order id were archived on purpose and are left alone, as are
// the tasks themselves: operators still see them in /monitoring/.
func (s *Sweeper) sweepArchived(ctx context.Context, res *SweepResult) error {
	var errs []error
	for page := 1; page <= archivedPerSweep/100; page++ {
		tasks, err := s.cfg.Archive.ListArchivedTasks(Queue, asynq.Page(page), asynq.PageSize(100))
		if err != nil {
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return nil
			}
			return fmt.Errorf("list archived tasks: %w", err)
		}
		for _, ti := range tasks {
			if ti.Type != TaskType {
				continue
			}
			o, err := Decode(ti.Payload)
			if err != nil {
				continue // invalid input: archived with its reason, never accepted
			}
			if _, err := s.store.Get(ctx, o.OrderID); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			// The row first, then the holds follow it: a handler still
			// running on a lost lease may confirm in between, and its
			// holds must then be committed, not released.
			row, inserted, err := s.store.Decide(ctx, Record{
				OrderID: o.OrderID, CustomerID: o.CustomerID, Status: StatusFailed, Reason: ReasonTaskArchived,
				Detail: truncate(ti.LastErr, 200), PlacedAt: o.PlacedAt, PayloadHash: o.Hash(), Lines: o.Lines,
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if inserted {
				res.Archived++
			}
			// A confirmed row commits its own lines; holds this payload
			// took on SKUs the row does not list were dropped with it.
			rowSKUs, extra := splitByRow(row, o.SKUs())
			if row.Status == StatusConfirmed {
				if len(extra) > 0 {
					_, err = s.gate.Release(ctx, o.OrderID, extra)
				}
				if err == nil {
					_, err = s.gate.Commit(ctx, o.OrderID, rowSKUs)
				}
			} else {
				_, err = s.gate.Release(ctx, o.OrderID, append(rowSKUs, extra...))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(tasks) < 100 {
			break
		}
	}
	return errors.Join(errs...)
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
		// Commit the row's own lines (idempotent for those already
		// committed). An expired hold on a SKU the row does not list was
		// taken by another payload with this id, which the row dropped: its
		// units were never sold, so they go back.
		rowSKUs, extra := splitByRow(row, skus)
		if len(extra) > 0 {
			if _, err := s.gate.Release(ctx, orderID, extra); err != nil {
				return err
			}
			s.swept.Add(ctx, int64(len(extra)), metric.WithAttributes(attribute.String("action", "released")))
		}
		if _, err := s.gate.Commit(ctx, orderID, rowSKUs); err != nil {
			return err
		}
		res.Committed++
		s.swept.Add(ctx, int64(len(skus)-len(extra)), metric.WithAttributes(attribute.String("action", "committed")))
		return nil
	}
	if _, err := s.gate.Release(ctx, orderID, skus); err != nil {
		return err
	}
	res.Released++
	s.swept.Add(ctx, int64(len(skus)), metric.WithAttributes(attribute.String("action", "released")))
	return nil
}
