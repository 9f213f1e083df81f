package stock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/lua"
)

// MaxQty is the largest quantity one line may ask for. CheckLines enforces
// it; the reserve script does not, since a larger quantity corrupts no
// counter (the line is short, or takes what is there like any other).
const MaxQty = 10000

// compensateTimeout bounds the release of earlier slot groups after a later
// group failed, which runs detached from the caller's context.
const compensateTimeout = 5 * time.Second

// DefaultRetention is how long a committed hold stays as a tombstone, so a
// late retry of the same reserve finds it and does not decrement again.
const DefaultRetention = 24 * time.Hour

// Scripts, each a redis.Script: Run sends EVALSHA and falls back to EVAL on
// NOSCRIPT, so a SCRIPT FLUSH or a restarted Redis costs one extra round trip.
var (
	reserveScript   = redis.NewScript(lua.Reserve)
	releaseScript   = redis.NewScript(lua.Release)
	commitScript    = redis.NewScript(lua.Commit)
	setScript       = redis.NewScript(lua.Set)
	addScript       = redis.NewScript(lua.Add)
	rebuildScript   = redis.NewScript(lua.Rebuild)
	rateLimitScript = redis.NewScript(lua.RateLimit)
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
}

// Gate is the stock gate over one Redis (or Redis Cluster). It is safe for
// concurrent use by many goroutines and many processes.
type Gate struct {
	rdb       redis.UniversalClient
	retention time.Duration
	cluster   bool
}

// New returns a Gate over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Gate {
	_, isCluster := rdb.(*redis.ClusterClient)
	return &Gate{
		rdb:       rdb,
		retention: cmp.Or(cfg.Retention, DefaultRetention),
		cluster:   cfg.Cluster || isCluster,
	}
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

// groups splits lines by cluster slot, in first-seen order. On a single node
// every line goes in one group, so the whole order is one atomic call.
func (g *Gate) groups(lines []Line) [][]Line {
	if !g.cluster {
		return [][]Line{lines}
	}
	var out [][]Line
	idx := map[int]int{}
	for _, l := range lines {
		s := Slot(l.SKU)
		i, ok := idx[s]
		if !ok {
			i = len(out)
			idx[s] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], l)
	}
	return out
}

// Reserve takes orderID's hold on every line until deadline, all or nothing.
// A repeat with the same lines returns AlreadyHeld or AlreadyCommitted and
// changes nothing; after a Release a new Reserve is a new attempt.
//
// Errors: *OutOfStockError, *NotStockedError, ErrConflict, ErrInvalid (none
// of which changed anything), or a Redis error, after which the order may or
// may not hold its lines and a retry of the same Reserve finds out.
func (g *Gate) Reserve(ctx context.Context, orderID string, lines []Line, deadline time.Time) (Outcome, error) {
	if err := checkOrderID(orderID); err != nil {
		return 0, err
	}
	if err := CheckLines(lines); err != nil {
		return 0, err
	}
	groups := g.groups(lines)
	outcome := AlreadyHeld
	for gi, grp := range groups {
		o, err := g.reserveGroup(ctx, orderID, grp, deadline)
		if err != nil {
			if gi > 0 {
				// Only reachable on a cluster: give back what earlier groups took.
				var taken []string
				for _, prev := range groups[:gi] {
					for _, l := range prev {
						taken = append(taken, l.SKU)
					}
				}
				// The compensation runs even when ctx is what failed the
				// later group; otherwise the stock waits for the sweeper.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
				_, rerr := g.Release(rctx, orderID, taken)
				cancel()
				if rerr != nil {
					return 0, errors.Join(err, fmt.Errorf("release earlier slot groups: %w", rerr))
				}
			}
			return 0, err
		}
		switch {
		case o == AlreadyCommitted:
			outcome = AlreadyCommitted
		case o == Reserved && outcome != AlreadyCommitted:
			outcome = Reserved
		}
	}
	return outcome, nil
}

func (g *Gate) reserveGroup(ctx context.Context, orderID string, lines []Line, deadline time.Time) (Outcome, error) {
	keys := make([]string, 0, 5*len(lines))
	args := make([]any, 0, 2+len(lines))
	args = append(args, orderID, strconv.FormatInt(deadline.UnixMilli(), 10))
	for _, l := range lines {
		keys = append(keys, lineKeys(l.SKU, orderID)...)
		args = append(args, strconv.FormatInt(l.Qty, 10))
	}
	res, err := runInts(ctx, reserveScript, g.rdb, keys, args, 3)
	if err != nil {
		return 0, fmt.Errorf("reserve %s: %w", orderID, err)
	}
	code, line, n := res[0], res[1], res[2]
	sku := func() string {
		if line >= 1 && int(line) <= len(lines) {
			return lines[line-1].SKU
		}
		return ""
	}
	switch code {
	case 1:
		return Reserved, nil
	case 2:
		return AlreadyHeld, nil
	case 3:
		return AlreadyCommitted, nil
	case 0:
		return 0, &OutOfStockError{SKU: sku(), Available: n}
	case -1:
		return 0, &NotStockedError{SKU: sku()}
	case -3:
		return 0, fmt.Errorf("%w: %s on %s", ErrConflict, orderID, sku())
	case -2:
		return 0, fmt.Errorf("%w: reserve script refused line %d (bad argument or corrupt counter)", ErrInvalid, line)
	}
	return 0, fmt.Errorf("reserve %s: unexpected script code %d", orderID, code)
}

// Release gives back what orderID's holds on skus recorded, once, and
// returns the units given back. Missing and committed holds are left alone,
// so a second Release, or a Release after Commit, changes nothing.
func (g *Gate) Release(ctx context.Context, orderID string, skus []string) (int64, error) {
	if err := checkOrderID(orderID); err != nil {
		return 0, err
	}
	if err := checkSKUs(skus); err != nil {
		return 0, err
	}
	var total int64
	for _, grp := range g.skuGroups(skus) {
		res, err := runInts(ctx, releaseScript, g.rdb, holdKeys(orderID, grp), []any{orderID}, 2)
		if err != nil {
			return total, fmt.Errorf("release %s: %w", orderID, err)
		}
		if res[0] < 0 {
			return total, fmt.Errorf("%w: release script refused its arguments or found a corrupt counter", ErrInvalid)
		}
		total += res[0]
	}
	return total, nil
}

// CommitResult reports what Commit did.
type CommitResult struct {
	// Units moved from held to sold by this call.
	Units int64
	// Missing counts SKUs on which the order had no hold at all: released
	// earlier, or never reserved. Committed holds do not count here.
	Missing int
}

// Commit turns orderID's holds on skus into sold units, once, and leaves a
// tombstone for the gate's retention window.
func (g *Gate) Commit(ctx context.Context, orderID string, skus []string) (CommitResult, error) {
	var out CommitResult
	if err := checkOrderID(orderID); err != nil {
		return out, err
	}
	if err := checkSKUs(skus); err != nil {
		return out, err
	}
	ret := strconv.FormatInt(max(g.retention.Milliseconds(), 1), 10)
	for _, grp := range g.skuGroups(skus) {
		res, err := runInts(ctx, commitScript, g.rdb, holdKeys(orderID, grp), []any{orderID, ret}, 3)
		if err != nil {
			return out, fmt.Errorf("commit %s: %w", orderID, err)
		}
		if res[0] < 0 {
			return out, fmt.Errorf("%w: commit script refused its arguments or found a corrupt counter", ErrInvalid)
		}
		out.Units += res[0]
		out.Missing += int(res[2])
	}
	return out, nil
}

// checkSKUs validates the SKUs given to Release and Commit, which become
// key names: a brace would move a key out of its SKU's slot.
func checkSKUs(skus []string) error {
	for _, s := range skus {
		if err := CheckSKU(s); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gate) skuGroups(skus []string) [][]string {
	skus = slices.Compact(slices.Sorted(slices.Values(skus)))
	lines := make([]Line, len(skus))
	for i, s := range skus {
		lines[i] = Line{SKU: s}
	}
	var out [][]string
	for _, grp := range g.groups(lines) {
		s := make([]string, len(grp))
		for i, l := range grp {
			s[i] = l.SKU
		}
		out = append(out, s)
	}
	return out
}

func holdKeys(orderID string, skus []string) []string {
	keys := make([]string, 0, 5*len(skus))
	for _, s := range skus {
		keys = append(keys, lineKeys(s, orderID)...)
	}
	return keys
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
