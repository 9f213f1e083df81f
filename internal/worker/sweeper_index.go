package worker

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/stockgate/stockgate/internal/stock"
)

// What makes the sweeper's cost follow the open holds rather than the
// catalogue (docs/design.md, "The hold index"): the gate's ExpiredHolds
// reads only the SKUs of the hold index; the full pass here, a slow cursor
// over every key, puts back any SKU whose index entry Redis lost; and a
// lease lets one sweeper of all the workers do the work.

// IndexGate is what the full pass needs from the stock gate (*stock.Gate).
// A SweepGate without it gets no full pass.
type IndexGate interface {
	ScanHolding(ctx context.Context, cur stock.ScanCursor, count int64) (stock.ScanCursor, int, error)
}

// Lease is what the sweeper needs from its lease (*lease.Lease): one
// sweeper of all the workers sweeps, the one that holds it. The steps are
// idempotent, so two sweepers at once (a lease lapsed under a frozen
// holder) cost only work done twice.
type Lease interface {
	Hold(ctx context.Context) (bool, error)
	Release(ctx context.Context) error
}

// DefaultFullPassInterval is how often a full pass starts, at most.
const DefaultFullPassInterval = 10 * time.Minute

// A full pass takes at most fullPassSteps SCAN calls of fullPassCount keys
// per sweep: with the default interval, 10 commands a second while a pass
// runs, which at a million SKUs (about 3 million keys) is five minutes.
const (
	fullPassCount = 1000
	fullPassSteps = 100
)

// indexSweep is the sweeper's state for the lease and the full pass.
type indexSweep struct {
	leading   atomic.Bool      // read by tests while Run runs
	running   bool             // a full pass is under way
	started   time.Time        // when the last pass started
	cur       stock.ScanCursor // where it stands
	added     int              // SKUs it put back so far
	reindexed metric.Int64Counter
}

func (x *indexSweep) init(cfg *SweeperConfig) error {
	if cfg.FullPassInterval <= 0 {
		cfg.FullPassInterval = DefaultFullPassInterval
	}
	var err error
	x.reindexed, err = otel.Meter(instrumentation).Int64Counter("stockgate.holds.reindexed",
		metric.WithDescription("SKUs with open holds that the hold index lacked, put back by the sweeper's full pass"))
	return err
}

// lead reports whether this sweeper sweeps this time: it holds the lease,
// or has none to hold.
func (s *Sweeper) lead(ctx context.Context) bool {
	if s.cfg.Lease == nil {
		return true
	}
	ok, err := s.cfg.Lease.Hold(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "sweeper lease unreachable; not sweeping this time", "err", err)
		}
		ok = false
	}
	if s.idx.leading.Swap(ok) != ok {
		s.log.InfoContext(ctx, "sweeper lease", "held", ok)
	}
	return ok
}

// resign gives the lease up on the way out, so that another worker's
// sweeper takes over at its next tick instead of when the lease lapses. It
// asks even when the last tick found no lease (a renewal that failed with
// the context): giving up a lease another holds changes nothing.
func (s *Sweeper) resign(ctx context.Context) {
	if s.cfg.Lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.cfg.Lease.Release(ctx); err != nil {
		s.log.WarnContext(ctx, "sweeper lease not released; another worker takes over when it lapses", "err", err)
	}
	s.idx.leading.Store(false)
}

// FullPassStep advances the full pass by up to fullPassSteps SCAN calls,
// starting a pass when none has started for FullPassInterval, and returns
// how many SKUs it put back into the hold index. Each is a SKU with open
// holds that the sweep would have missed (Redis lost its mark: a failover,
// or holds older than the index), and it is swept from now on. Run calls
// it; it is not safe to call from two goroutines at once.
func (s *Sweeper) FullPassStep(ctx context.Context) (int, error) {
	ig, ok := s.gate.(IndexGate)
	if !ok {
		return 0, nil
	}
	x := &s.idx
	if !x.running {
		if !x.started.IsZero() && time.Since(x.started) < s.cfg.FullPassInterval {
			return 0, nil
		}
		x.running, x.started, x.cur, x.added = true, time.Now(), stock.ScanCursor{}, 0
	}
	total := 0
	for range fullPassSteps {
		next, added, err := ig.ScanHolding(ctx, x.cur, fullPassCount)
		if err != nil {
			return total, err // the pass goes on from here next time
		}
		total += added
		x.added += added
		x.cur = next
		if next == (stock.ScanCursor{}) {
			x.running = false
			s.log.DebugContext(ctx, "full pass over the keys done", "seconds", time.Since(x.started).Seconds(), "reindexed", x.added)
			break
		}
	}
	if total > 0 {
		x.reindexed.Add(ctx, int64(total))
		s.log.WarnContext(ctx, "the hold index lacked SKUs with open holds; the full pass put them back", "skus", total)
	}
	return total, nil
}
