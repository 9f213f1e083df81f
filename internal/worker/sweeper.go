package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
)

// SweepGate is what the sweeper needs from the stock gate (*stock.Gate).
type SweepGate interface {
	orders.Holds
	ExpiredHolds(ctx context.Context, now time.Time, limit int) ([]stock.Hold, error)
}

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
	// those orders too end with a row. ArchiveClient, needed with it, moves
	// every archived task the sweeper has handled to the settled queue
	// (sweepArchived).
	Archive       *asynq.Inspector
	ArchiveClient *asynq.Client
	// Queues are the order queues whose archives the sweeper reads; default
	// orders.Queue.
	Queues []string
	// Ledger records the units of cancellations after the sale that the
	// sweeper finishes giving back (*catalog.Catalog).
	Ledger orders.Ledger
	Now    func() time.Time
	Logger *slog.Logger
	// Lease, when set, lets only the sweeper holding it sweep, so that
	// several workers do not multiply the work (sweeper_index.go).
	Lease Lease
	// FullPassInterval is how often, at most, a full pass over the keys
	// starts, finding open holds the hold index lacks; default
	// DefaultFullPassInterval.
	FullPassInterval time.Duration
}

// Sweeper settles holds that outlived their deadline. Such a hold belongs to
// an order whose handler died or gave up: the order gets an expired row if it
// has none, and the hold then follows whatever row stands. Every step is
// idempotent and the row is the arbiter, so any number of sweepers may run
// at once, beside any number of handlers.
type Sweeper struct {
	gate  SweepGate
	store SweepStore
	flow  orders.Flow
	cfg   SweeperConfig
	log   *slog.Logger
	tr    trace.Tracer
	swept metric.Int64Counter
	idx   indexSweep // the lease and the full pass (sweeper_index.go)
}

// NewSweeper returns a Sweeper.
func NewSweeper(gate SweepGate, store SweepStore, cfg SweeperConfig) (*Sweeper, error) {
	cfg.Interval = cmp.Or(cfg.Interval, DefaultSweepInterval)
	cfg.Batch = cmp.Or(cfg.Batch, DefaultSweepBatch)
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{orders.Queue}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.validateArchive(); err != nil {
		return nil, err
	}
	swept, err := otel.Meter(instrumentation).Int64Counter("stockgate.holds.swept",
		metric.WithDescription("Expired holds settled by the sweeper, by action (committed or released)"))
	if err != nil {
		return nil, err
	}
	moves, err := newMoveMetrics()
	if err != nil {
		return nil, err
	}
	tr := otel.Tracer(instrumentation)
	s := &Sweeper{gate: gate, store: store, flow: orders.Flow{Rows: tracedRows{store, tr, moves}, Holds: gate, Ledger: cfg.Ledger},
		cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()), tr: tr, swept: swept}
	return s, s.idx.init(&s.cfg)
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Orders    int // orders with an expired hold
	Expired   int // expired rows this sweep inserted
	Committed int // orders whose holds were committed (their row was confirmed)
	Released  int // orders whose holds were released
	// CheckoutsExpired counts held rows this sweep moved to expired.
	CheckoutsExpired int
	// Returned counts cancellations after the sale whose units this sweep
	// finished giving back.
	Returned int
	Archived int // rows recorded for archived tasks (failed, or rejected invalid)
	// ArchivedRead counts the archived tasks read, Settled those moved out
	// of their queue's archive once handled.
	ArchivedRead, Settled int
}

// Run sweeps every Interval until ctx is done, while it holds the lease
// (if any), each time after a step of the full pass.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	defer s.resign(ctx)
	for {
		if s.lead(ctx) {
			if _, err := s.FullPassStep(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "full pass step failed", "err", err)
			}
			if res, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "sweep failed", "err", err)
			} else if res.Orders > 0 || res.Archived > 0 || res.Settled > 0 || res.CheckoutsExpired > 0 || res.Returned > 0 {
				s.log.InfoContext(ctx, "swept expired holds", "orders", res.Orders, "expired", res.Expired,
					"committed", res.Committed, "released", res.Released, "archived_decided", res.Archived,
					"archived_settled", res.Settled, "checkouts_expired", res.CheckoutsExpired, "returned", res.Returned)
			}
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
	var ids []string
	for _, h := range holds {
		if _, ok := byOrder[h.OrderID]; !ok {
			ids = append(ids, h.OrderID)
		}
		byOrder[h.OrderID] = append(byOrder[h.OrderID], h.SKU)
	}
	var errs []error
	for _, id := range ids {
		if err := s.settle(ctx, id, byOrder[id], &res); err != nil {
			errs = append(errs, fmt.Errorf("settle %s: %w", id, err))
		}
	}
	res.Orders = len(ids)
	if err := s.sweepCheckouts(ctx, &res); err != nil {
		errs = append(errs, err)
	}
	if s.cfg.Archive != nil {
		if err := s.sweepArchived(ctx, &res); err != nil {
			errs = append(errs, err)
		}
	}
	span.SetAttributes(attribute.Int("holds.orders", res.Orders), attribute.Int("holds.expired", res.Expired),
		attribute.Int("holds.archived", res.Archived))
	return res, errors.Join(errs...)
}

// settle records expired for an order whose holds on skus passed their
// deadline, unless a row stands, and the holds follow the row that stands:
// a slow handler that inserted confirmed first gets its holds committed.
func (s *Sweeper) settle(ctx context.Context, orderID string, skus []string, res *SweepResult) error {
	row, inserted, settled, err := s.flow.Conclude(ctx, orders.Record{
		OrderID: orderID, Status: orders.StatusExpired, Reason: orders.ReasonHoldExpired,
		Detail: "hold passed its deadline before the order was decided",
	}, skus)
	if inserted {
		res.Expired++
	}
	if err == nil && row.Status == orders.StatusHeld {
		return s.settleHeld(ctx, row, res)
	}
	// Count the expired holds by what became of them.
	committed, released := countIn(skus, settled.Committed), countIn(skus, settled.Released)
	if released > 0 {
		s.swept.Add(ctx, int64(released), metric.WithAttributes(attribute.String("action", "released")))
	}
	if err != nil {
		return err
	}
	if settled.Committed != nil {
		res.Committed++
		s.swept.Add(ctx, int64(committed), metric.WithAttributes(attribute.String("action", "committed")))
	} else {
		res.Released++
	}
	return nil
}

// countIn counts the elements of skus that are in set.
func countIn(skus, set []string) int {
	n := 0
	for _, s := range skus {
		if slices.Contains(set, s) {
			n++
		}
	}
	return n
}
