package stock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reservation is what a Reserve found or did.
type Reservation struct {
	// Outcome is what a successful Reserve found; 0 after an error.
	Outcome Outcome
	// Token names the hold that stands: the new one this call made when
	// Reserved, the earlier one otherwise ("" for a hold written before
	// holds had tokens). The order's row records it, so that Commit can
	// tell the hold the row relied on from one a later delivery took.
	Token string
	// Partial is set with an error when earlier hash-slot groups of the
	// order (Redis Cluster only) hold their lines under Token while a later
	// group could not: the order's row must be decided and its holds then
	// follow it, as after any reserve.
	Partial bool
}

// newToken is a fresh hold token: 64 random bits, never "".
func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reserve takes orderID's hold on every line until deadline, all or nothing
// (under Redis Cluster, all or nothing per hash-slot group; see Partial). A
// repeat with the same lines returns AlreadyHeld or AlreadyCommitted and
// changes nothing; after a Release a new Reserve is a new attempt.
// Concurrent calls are combined into one script call per slot.
//
// Errors: *OutOfStockError, *NotStockedError, ErrConflict, ErrInvalid (none
// of which changed anything unless Partial), or a Redis error, after which
// the order may or may not hold its lines and a retry of the same Reserve
// finds out.
func (g *Gate) Reserve(ctx context.Context, orderID string, lines []Line, deadline time.Time) (Reservation, error) {
	if err := checkOrderID(orderID); err != nil {
		return Reservation{}, err
	}
	if err := CheckLines(lines); err != nil {
		return Reservation{}, err
	}
	res := Reservation{Outcome: AlreadyHeld, Token: newToken()}
	for gi, grp := range g.groups(lines) {
		// The first group's hold names the token every later group uses,
		// so that a redelivery that finds the first group held carries on
		// under the same token. Not once a group is committed: the row is
		// then confirmed under that token, and a later group's new hold
		// (its tombstone lost) is none the row relied on. Under the
		// committed token, committing the row would sell it a second time.
		tok := res.Token
		if res.Outcome == AlreadyCommitted {
			tok = newToken()
		}
		r, err := g.reserveGroup(ctx, orderID, tok, grp, deadline)
		if err != nil {
			return Reservation{Token: res.Token, Partial: gi > 0}, err
		}
		if gi == 0 {
			res.Token = r.Token
		} else if r.Token != res.Token {
			return Reservation{Token: res.Token, Partial: true},
				fmt.Errorf("%w: %s holds %s under another delivery's token", ErrConflict, orderID, grp[0].SKU)
		}
		switch {
		case r.Outcome == AlreadyCommitted:
			res.Outcome = AlreadyCommitted
		case r.Outcome == Reserved && res.Outcome != AlreadyCommitted:
			res.Outcome = Reserved
		}
	}
	return res, nil
}

type reserveReq struct {
	orderID, token string
	lines          []Line
	deadline       time.Time
}

type reserveRes struct {
	r   Reservation
	err error
}

func (g *Gate) reserveGroup(ctx context.Context, orderID, token string, lines []Line, deadline time.Time) (Reservation, error) {
	res, ok := g.reserves.Do(ctx, reserveReq{orderID: orderID, token: token, lines: lines, deadline: deadline})
	if !ok {
		return Reservation{}, fmt.Errorf("reserve %s: %w", orderID, ctx.Err())
	}
	return res.r, res.err
}

// reserveMany runs a batch of reserves, one script call per slot and per
// maxBatchLines lines.
func (g *Gate) reserveMany(ctx context.Context, reqs []reserveReq) []reserveRes {
	out := make([]reserveRes, len(reqs))
	calls := g.chunk(len(reqs), func(i int) (string, int) { return reqs[i].lines[0].SKU, len(reqs[i].lines) })
	g.runBatches(ctx, reserveScript, calls, func(idx []int) ([]string, []any) {
		keys := make([]string, 0, 5*len(idx))
		args := make([]any, 1, 1+5*len(idx))
		args[0] = strconv.Itoa(len(idx))
		for _, i := range idx {
			r := reqs[i]
			args = append(args, r.orderID, r.token, strconv.FormatInt(r.deadline.UnixMilli(), 10), strconv.Itoa(len(r.lines)))
			for _, l := range r.lines {
				keys = append(keys, lineKeys(l.SKU, r.orderID)...)
				args = append(args, strconv.FormatInt(l.Qty, 10))
			}
		}
		return keys, args
	}, func(idx []int, vals []any, err error) {
		for k, i := range idx {
			if err == nil && len(vals) < 4*(k+1) {
				err = fmt.Errorf("reserve script answered %d values for %d orders", len(vals), len(idx))
			}
			if err != nil {
				out[i].err = fmt.Errorf("reserve %s: %w", reqs[i].orderID, err)
				continue
			}
			out[i].r, out[i].err = reserveReply(reqs[i], vals[4*k:4*k+4])
		}
	})
	return out
}

// reserveReply turns one order's four reply values into its outcome or its
// typed error.
func reserveReply(r reserveReq, v []any) (Reservation, error) {
	code, _ := v[0].(int64)
	line, _ := v[1].(int64)
	n, _ := v[2].(int64)
	tok, _ := v[3].(string)
	sku := ""
	if line >= 1 && int(line) <= len(r.lines) {
		sku = r.lines[line-1].SKU
	}
	switch code {
	case 1:
		return Reservation{Outcome: Reserved, Token: tok}, nil
	case 2:
		return Reservation{Outcome: AlreadyHeld, Token: tok}, nil
	case 3:
		return Reservation{Outcome: AlreadyCommitted, Token: tok}, nil
	case 0:
		return Reservation{}, &OutOfStockError{SKU: sku, Available: n}
	case -1:
		return Reservation{}, &NotStockedError{SKU: sku}
	case -3:
		return Reservation{}, fmt.Errorf("%w: %s on %s", ErrConflict, r.orderID, sku)
	case -2:
		return Reservation{}, fmt.Errorf("%w: reserve script refused line %d (bad argument or corrupt counter)", ErrInvalid, line)
	}
	return Reservation{}, fmt.Errorf("reserve %s: unexpected script code %v", r.orderID, v[0])
}

// CommitResult reports what Commit did.
type CommitResult struct {
	// Units moved from held to sold by this call.
	Units int64
	// Missing counts SKUs on which the order had no hold at all: released
	// earlier, or never reserved. Committed holds do not count here.
	Missing int
	// Released is the units given back because their hold was under another
	// token than the row's: a delivery the row did not rely on took them.
	Released int64
}

// Commit makes orderID's holds on skus follow a confirmed row whose hold
// token is token: a hold under that token becomes sold, once, and leaves a
// tombstone for the gate's retention window; a hold under another token
// was taken by a delivery the row did not rely on and is released. A row
// written before rows had tokens passes "", which matches only holds
// written before holds had one.
// Concurrent calls are combined into one script call per slot.
func (g *Gate) Commit(ctx context.Context, orderID, token string, skus []string) (CommitResult, error) {
	var out CommitResult
	if err := checkOrderID(orderID); err != nil {
		return out, err
	}
	if err := checkSKUs(skus); err != nil {
		return out, err
	}
	for _, grp := range g.skuGroups(skus) {
		res, ok := g.commits.Do(ctx, commitReq{orderID: orderID, token: token, skus: grp})
		if !ok {
			return out, fmt.Errorf("commit %s: %w", orderID, ctx.Err())
		}
		if res.err != nil {
			return out, res.err
		}
		out.Units += res.r.Units
		out.Missing += res.r.Missing
		out.Released += res.r.Released
	}
	return out, nil
}

type commitReq struct {
	orderID, token string
	skus           []string
}

type commitRes struct {
	r   CommitResult
	err error
}

func (g *Gate) commitMany(ctx context.Context, reqs []commitReq) []commitRes {
	out := make([]commitRes, len(reqs))
	ret := strconv.FormatInt(max(g.retention.Milliseconds(), 1), 10)
	calls := g.chunk(len(reqs), func(i int) (string, int) { return reqs[i].skus[0], len(reqs[i].skus) })
	g.runBatches(ctx, commitScript, calls, func(idx []int) ([]string, []any) {
		keys := make([]string, 0, 5*len(idx))
		args := make([]any, 2, 2+3*len(idx))
		args[0], args[1] = ret, strconv.Itoa(len(idx))
		for _, i := range idx {
			r := reqs[i]
			args = append(args, r.orderID, r.token, strconv.Itoa(len(r.skus)))
			keys = append(keys, holdKeys(r.orderID, r.skus)...)
		}
		return keys, args
	}, func(idx []int, vals []any, err error) {
		for k, i := range idx {
			if err == nil && len(vals) < 4*(k+1) {
				err = fmt.Errorf("commit script answered %d values for %d orders", len(vals), len(idx))
			}
			if err != nil {
				out[i].err = fmt.Errorf("commit %s: %w", reqs[i].orderID, err)
				continue
			}
			units, _ := vals[4*k].(int64)
			missing, _ := vals[4*k+2].(int64)
			released, _ := vals[4*k+3].(int64)
			if units < 0 {
				out[i].err = fmt.Errorf("%w: commit script refused its arguments or found a corrupt counter", ErrInvalid)
				continue
			}
			out[i].r = CommitResult{Units: units, Missing: int(missing), Released: released}
		}
	})
	return out
}

// chunk splits a batch of n requests (each one slot group, named by its
// first SKU, with its line count) into script calls: one per hash slot,
// each at most maxBatchLines lines. On a single node every request shares
// one call, up to the line bound.
func (g *Gate) chunk(n int, of func(i int) (sku string, lines int)) [][]int {
	var calls [][]int
	open := map[int]int{} // slot -> index in calls of the call being filled
	lines := map[int]int{}
	for i := range n {
		sku, l := of(i)
		slot := 0
		if g.cluster {
			slot = Slot(sku)
		}
		c, ok := open[slot]
		if !ok || lines[c]+l > maxBatchLines {
			c = len(calls)
			calls = append(calls, nil)
			open[slot] = c
		}
		calls[c] = append(calls[c], i)
		lines[c] += l
	}
	return calls
}

// runBatches sends one script call per chunk of request indexes, built by
// build and answered to reply: a lone call directly (EVALSHA, EVAL on
// NOSCRIPT), several in one pipeline, which a cluster client splits by
// node.
func (g *Gate) runBatches(ctx context.Context, s *redis.Script, calls [][]int,
	build func(idx []int) ([]string, []any), reply func(idx []int, vals []any, err error)) {
	if len(calls) == 1 {
		keys, args := build(calls[0])
		vals, err := s.Run(ctx, g.rdb, keys, args...).Slice()
		reply(calls[0], vals, err)
		return
	}
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for c, idx := range calls {
			keys, args := build(idx)
			cmds[c] = s.EvalSha(ctx, p, keys, args...)
		}
		return nil
	})
	for c, idx := range calls {
		vals, err := cmds[c].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A SCRIPT FLUSH or a restarted Redis: this call alone again,
			// through Run, which loads the script.
			keys, args := build(idx)
			vals, err = s.Run(ctx, g.rdb, keys, args...).Slice()
		}
		reply(idx, vals, err)
	}
}

// Release gives back what orderID's holds on skus recorded, once, whatever
// their token, and returns the units given back: the order's row is not
// confirmed. Missing and committed holds are left alone, so a second
// Release, or a Release after Commit, changes nothing.
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
	if len(skus) == 0 {
		// No group at all: an empty one would reach a script as no keys
		// (refused) or index its first SKU in a batch.
		return nil
	}
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
