// Package failover notices that a Redis Cluster master's data changed
// identity (a replica was promoted, or the master restarted) and repairs the
// SKUs whose slots it serves from Postgres: fence, wait the write fence,
// sell once the confirmed sales whose holds the new master never had, then
// rebuild available (docs/design.md, "Failover").
//
// It changes stock only through the stock gate and the ledger, and reads
// order rows only; it never writes them.
package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
)

// Gate is what the repair needs from the stock gate (*stock.Gate).
type Gate interface {
	SKUs(ctx context.Context) ([]string, error)
	Fence(ctx context.Context, skus []string) error
	Absorb(ctx context.Context, sku string, sales []stock.Sale) (units int64, orders int, err error)
}

// Sales lists recent confirmed sales (*orderstore.Store).
type Sales interface {
	ConfirmedSince(ctx context.Context, skus []string, since time.Time) ([]orderstore.Sale, error)
}

// Ledger rebuilds fenced SKUs (*catalog.Ledger).
type Ledger interface {
	Rebuild(ctx context.Context, skus []string, fence time.Duration) ([]catalog.Rebuilt, error)
}

// Defaults for Config.
const (
	DefaultInterval = time.Second
	DefaultLookback = time.Minute
)

// Config configures a Watcher.
type Config struct {
	// Interval between checks of the masters' replication ids. Default
	// DefaultInterval.
	Interval time.Duration
	// Fence is how long the repair waits between fencing and reading the
	// confirmed rows: orderstore.WriteFence of the workers' handler timeout.
	// Required.
	Fence time.Duration
	// Lookback is how long before the last check that still saw the old
	// master a lost write may have been made (the replication lag it
	// allows). Default DefaultLookback. The window is capped at half of
	// Retention, since a confirmed order's tombstone must still be there
	// for the repair to tell its hold was not lost.
	Lookback  time.Duration
	Retention time.Duration // the gate's tombstone retention; default stock.DefaultRetention
	Logger    *slog.Logger
	Now       func() time.Time
}

// Report is what one repair did.
type Report struct {
	SKUs        []string
	LostUnits   int64 // units of confirmed sales whose holds the failover lost, sold now
	LostOrders  int
	Oversold    []string // SKUs whose held + sold exceed stocked after the rebuild
	FencedSince time.Time
}

// Watcher checks every master's replication id and repairs the SKUs of the
// slots whose master changed. Several workers may each run one: every step
// of the repair is idempotent.
type Watcher struct {
	rdb    *redis.ClusterClient
	gate   Gate
	sales  Sales
	ledger Ledger
	cfg    Config

	// replid of each slot's master as last seen, and when each replid was
	// last seen serving.
	slots    [clusterSlots]string
	lastSeen map[string]time.Time
}

const clusterSlots = 16384

// New returns a Watcher over the cluster client the gate uses.
func New(rdb *redis.ClusterClient, gate Gate, sales Sales, ledger Ledger, cfg Config) (*Watcher, error) {
	if cfg.Fence <= 0 {
		return nil, errors.New("failover watcher: Fence must be positive")
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.Lookback = cmp.Or(cfg.Lookback, DefaultLookback)
	cfg.Retention = cmp.Or(cfg.Retention, stock.DefaultRetention)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Watcher{rdb: rdb, gate: gate, sales: sales, ledger: ledger, cfg: cfg, lastSeen: map[string]time.Time{}}, nil
}

// Run checks every Interval until ctx ends. A failed check or repair is
// logged and tried again at the next tick: the slots keep their old
// replication id until their repair succeeds.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := w.Check(ctx); err != nil && ctx.Err() == nil {
			w.cfg.Logger.WarnContext(ctx, "failover check failed; trying again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check reads every master's replication id once and repairs the SKUs of
// the slots whose master's id changed since the last check. The first check
// only learns the ids. It returns the repair's report, if one ran.
func (w *Watcher) Check(ctx context.Context) (*Report, error) {
	now, cur, err := w.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var changed []int
	var since time.Time
	for s, id := range cur {
		old := w.slots[s]
		switch {
		case id == "":
			continue // no master answered for it: keep what we knew
		case old == "" || old == id:
			w.slots[s] = id
			w.lastSeen[id] = now
			continue
		}
		changed = append(changed, s)
		if t := w.lastSeen[old]; since.IsZero() || t.Before(since) {
			since = t
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	since = since.Add(-w.cfg.Lookback)
	if floor := now.Add(-w.cfg.Retention / 2); since.Before(floor) {
		since = floor
	}
	rep, err := w.repair(ctx, changed, since)
	if err != nil {
		return nil, err
	}
	for _, s := range changed {
		w.slots[s] = cur[s]
		w.lastSeen[cur[s]] = now
	}
	return rep, nil
}

// snapshot maps each slot to its master's master_replid ("" where no master
// answered).
func (w *Watcher) snapshot(ctx context.Context) (time.Time, [clusterSlots]string, error) {
	var out [clusterSlots]string
	now := w.cfg.Now()
	ranges, err := w.rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return now, out, fmt.Errorf("cluster slots: %w", err)
	}
	var mu sync.Mutex
	ids := map[string]string{}
	// Errors from masters that are down are expected in a failover: their
	// slots read "" and keep their old id.
	_ = w.rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if id := infoField(info, "master_replid"); id != "" && infoField(info, "role") == "master" {
			mu.Lock()
			ids[c.Options().Addr] = id
			mu.Unlock()
		}
		return nil
	})
	stale := false
	for _, r := range ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		id, ok := ids[r.Nodes[0].Addr]
		if !ok {
			stale = true
			continue
		}
		for s := r.Start; s <= r.End && s < clusterSlots; s++ {
			out[s] = id
		}
	}
	if stale {
		// The client's node list lags the cluster's slot map (a promotion
		// just happened): have it reload for the next check.
		w.rdb.ReloadState(ctx)
	}
	return now, out, nil
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// repair fences the SKUs of the changed slots, waits the fence, sells once
// the confirmed sales since since whose holds are gone, and rebuilds.
func (w *Watcher) repair(ctx context.Context, slots []int, since time.Time) (*Report, error) {
	in := map[int]bool{}
	for _, s := range slots {
		in[s] = true
	}
	all, err := w.gate.SKUs(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{FencedSince: w.cfg.Now()}
	for _, sku := range all {
		if in[stock.Slot(sku)] {
			rep.SKUs = append(rep.SKUs, sku)
		}
	}
	log := w.cfg.Logger
	log.WarnContext(ctx, "redis master changed (failover or restart): fencing its SKUs, then reconciling them from Postgres",
		"slots", len(slots), "skus", len(rep.SKUs), "fence", w.cfg.Fence.String(), "since", since)
	if len(rep.SKUs) == 0 {
		return rep, nil
	}
	if err := w.gate.Fence(ctx, rep.SKUs); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("interrupted while fencing (the SKUs stay fenced until stockctl rebuild or the next check): %w", ctx.Err())
	case <-time.After(w.cfg.Fence):
	}
	sales, err := w.sales.ConfirmedSince(ctx, rep.SKUs, since)
	if err != nil {
		return nil, err
	}
	bySKU := map[string][]stock.Sale{}
	for _, s := range sales {
		bySKU[s.SKU] = append(bySKU[s.SKU], stock.Sale{OrderID: s.OrderID, Qty: s.Qty, Token: s.Token})
	}
	for _, sku := range rep.SKUs {
		units, orders, err := w.gate.Absorb(ctx, sku, bySKU[sku])
		if errors.Is(err, stock.ErrLive) {
			continue // another worker's repair (or an operator) rebuilt it already
		}
		if err != nil {
			return nil, err
		}
		if units > 0 {
			log.WarnContext(ctx, "failover lost the holds of confirmed orders; sold them now", "sku", sku, "units", units, "orders", orders)
		}
		rep.LostUnits += units
		rep.LostOrders += orders
	}
	rebuilt, err := w.ledger.Rebuild(ctx, rep.SKUs, 0)
	if err != nil {
		return nil, err
	}
	for _, r := range rebuilt {
		if r.Oversold() {
			rep.Oversold = append(rep.Oversold, r.SKU)
		}
	}
	lvl := slog.LevelInfo
	if len(rep.Oversold) > 0 {
		lvl = slog.LevelError
	}
	log.Log(ctx, lvl, "failover repair done", "skus", len(rep.SKUs), "lost_units", rep.LostUnits, "lost_orders", rep.LostOrders,
		"oversold_skus", rep.Oversold)
	return rep, nil
}
