package stock

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/batch"
	"github.com/stockgate/stockgate/lua"
)

// MaxQty is the largest quantity one line may ask for. CheckLines enforces
// it; the reserve script does not, since a larger quantity corrupts no
// counter (the line is short, or takes what is there like any other).
const MaxQty = 10000

// DefaultRetention is how long a committed hold stays as a tombstone, so a
// late retry of the same reserve finds it and does not decrement again.
const DefaultRetention = 24 * time.Hour

// Scripts, each a redis.Script: Run sends EVALSHA and falls back to EVAL on
// NOSCRIPT, so a SCRIPT FLUSH or a restarted Redis costs one extra round trip.
var (
	reserveScript = redis.NewScript(lua.Reserve)
	releaseScript = redis.NewScript(lua.Release)
	commitScript  = redis.NewScript(lua.Commit)
	setScript     = redis.NewScript(lua.Set)
	addScript     = redis.NewScript(lua.Add)
	rebuildScript = redis.NewScript(lua.Rebuild)
	cancelScript  = redis.NewScript(lua.Cancel)
)

// Line is one SKU and quantity of an order.
type Line struct {
	SKU string
	Qty int64
}

// Outcome says what a successful Reserve found.
type Outcome int

const (
	// Reserved means the units were taken from available into held now.
	Reserved Outcome = iota + 1
	// AlreadyHeld means this order already held exactly these lines: a
	// repeated delivery. Nothing changed.
	AlreadyHeld
	// AlreadyCommitted means this order's holds were committed earlier and
	// their tombstone is still there. Nothing changed.
	AlreadyCommitted
)

func (o Outcome) String() string {
	switch o {
	case Reserved:
		return "reserved"
	case AlreadyHeld:
		return "already_held"
	case AlreadyCommitted:
		return "already_committed"
	}
	return "unknown"
}

// Config configures a Gate. The zero value is usable.
type Config struct {
	// Retention is how long a committed hold's tombstone lives.
	// Default DefaultRetention.
	Retention time.Duration
	// Cluster forces the per-slot path: one script call per hash-slot group
	// of an order's lines. It is set automatically for *redis.ClusterClient.
	Cluster bool
	// Batch bounds how concurrent Reserve and Commit calls are combined,
	// each kind into one script call per hash slot. A call never waits for
	// a batch to fill: at low load every call is a batch of one. MaxBatch
	// counts orders (default DefaultMaxBatch); MaxInflight defaults to 1
	// (with more, a lone call nearly always finds a free slot and goes
	// alone), Timeout to 5s.
	Batch batch.Config
	// WaitReplicas, when above 0, makes every reserve and commit script
	// call wait (Redis WAIT, on the connection and master that ran it) until
	// that many replicas have its writes, at most WaitTimeout (default
	// DefaultWaitTimeout); fewer is ErrNotReplicated. It closes the window
	// in which a failover loses a hold the order's row already relies on
	// (docs/design.md, "Failover").
	WaitReplicas int
	WaitTimeout  time.Duration
}

// DefaultMaxBatch bounds the orders one reserve or commit script call takes.
// A script blocks Redis while it runs, Asynq's own dequeues included, so a
// batch is also bounded by its lines (maxBatchLines).
const DefaultMaxBatch = 64

// maxBatchLines bounds the lines, summed over its orders, one script call
// takes: about 5 µs of Redis time each, so a full call stays near a
// millisecond.
const maxBatchLines = 256

// Gate is the stock gate over one Redis (or Redis Cluster). It is safe for
// concurrent use by many goroutines and many processes.
type Gate struct {
	rdb       redis.UniversalClient
	retention time.Duration
	cluster   bool
	ops       *batch.Batcher[op, opRes]

	waitReplicas int
	waitTimeout  time.Duration
}

// New returns a Gate over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Gate {
	_, isCluster := rdb.(*redis.ClusterClient)
	g := &Gate{
		rdb:       rdb,
		retention: cmp.Or(cfg.Retention, DefaultRetention),
		cluster:   cfg.Cluster || isCluster,

		waitReplicas: cfg.WaitReplicas,
		waitTimeout:  cmp.Or(cfg.WaitTimeout, DefaultWaitTimeout),
	}
	bc := cfg.Batch
	bc.MaxBatch = cmp.Or(bc.MaxBatch, DefaultMaxBatch)
	bc.MaxInflight = cmp.Or(bc.MaxInflight, 1)
	bc.Timeout = cmp.Or(bc.Timeout, 5*time.Second)
	g.ops = batch.New(bc, g.runOps)
	return g
}

// CheckLines validates an order's lines the way the scripts will: 1–50
// lines, valid SKUs, quantities 1..MaxQty and no SKU twice.
func CheckLines(lines []Line) error {
	if len(lines) == 0 {
		return fmt.Errorf("%w: no lines", ErrInvalid)
	}
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		if err := CheckSKU(l.SKU); err != nil {
			return err
		}
		if l.Qty < 1 || l.Qty > MaxQty {
			return fmt.Errorf("%w: qty %d for %s must be 1-%d", ErrInvalid, l.Qty, l.SKU, MaxQty)
		}
		if seen[l.SKU] {
			return fmt.Errorf("%w: sku %s appears twice", ErrInvalid, l.SKU)
		}
		seen[l.SKU] = true
	}
	return nil
}

func checkOrderID(orderID string) error {
	if orderID == "" || len(orderID) > 64 {
		return fmt.Errorf("%w: order id must be 1-64 characters", ErrInvalid)
	}
	return nil
}

// groups splits lines by cluster slot, in slot order, so that every
// delivery of an order takes its groups in the same order. On a single node
// every line goes in one group, so the whole order is one atomic call.
func (g *Gate) groups(lines []Line) [][]Line {
	if !g.cluster {
		return [][]Line{lines}
	}
	var out [][]Line
	idx := map[int]int{}
	var slots []int
	for _, l := range lines {
		s := Slot(l.SKU)
		i, ok := idx[s]
		if !ok {
			i = len(out)
			idx[s] = i
			out = append(out, nil)
			slots = append(slots, s)
		}
		out[i] = append(out[i], l)
	}
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(slots[a], slots[b]) })
	sorted := make([][]Line, len(out))
	for i, j := range order {
		sorted[i] = out[j]
	}
	return sorted
}

// runInts runs a script and checks that it returned want integers.
func runInts(ctx context.Context, s *redis.Script, rdb redis.Scripter, keys []string, args []any, want int) ([]int64, error) {
	v, err := s.Run(ctx, rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(v) != want {
		return nil, fmt.Errorf("script returned %d values, want %d", len(v), want)
	}
	return v, nil
}
