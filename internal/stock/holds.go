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
	res, ok := g.ops.Do(ctx, op{reserve: &reserveReq{orderID: orderID, token: token, lines: lines, deadline: deadline}})
	if !ok {
		return Reservation{}, fmt.Errorf("reserve %s: %w", orderID, ctx.Err())
	}
	return res.reserve.r, res.reserve.err
}

// op is one request to the gate's batcher: a reserve or a commit of one
// slot group of one order. Both kinds share the batcher, so that a batch
// carries the reserves of orders arriving and the commits of orders just
// confirmed to Redis in one round trip.
type op struct {
	reserve *reserveReq
	commit  *commitReq
}

type opRes struct {
	reserve reserveRes
	commit  commitRes
}

// scriptCall is one script call of a batch: its keys and arguments, and
// what to do with its reply.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	reply  func(vals []any, err error)
	// marked says the call relies on the batch's index marks: when they
	// fail, so does the call, and its caller retries (a hold with no mark
	// would wait for the sweeper's full pass).
	marked bool
	// sku is the call's first SKU, and effect says from a reply whether
	// the call wrote and whether one of its orders relies on an earlier
	// write (a hold or tombstone it found): both only matter with WAIT.
	sku    string
	effect func(vals []any) (wrote, relies bool)
}

// runOps runs a batch: one reserve call and one commit call per slot (and
// per maxBatchLines lines), all in one round trip.
func (g *Gate) runOps(ctx context.Context, ops []op) []opRes {
	out := make([]opRes, len(ops))
	var rs, cs []int
	for i, o := range ops {
		if o.reserve != nil {
			rs = append(rs, i)
		} else {
			cs = append(cs, i)
		}
	}
	var calls []scriptCall
	for _, idx := range g.chunk(rs, func(i int) (string, int) { return ops[i].reserve.lines[0].SKU, len(ops[i].reserve.lines) }) {
		calls = append(calls, g.reserveCall(ops, idx, out))
	}
	for _, idx := range g.chunk(cs, func(i int) (string, int) { return ops[i].commit.skus[0], len(ops[i].commit.skus) }) {
		calls = append(calls, g.commitCall(ops, idx, out))
	}
	// Every SKU a reserve may take a hold on goes into the hold index in
	// the same round trip (index.go): the script cannot write it, since
	// under Redis Cluster the index lives in other slots.
	m := marks{}
	for _, i := range rs {
		for _, l := range ops[i].reserve.lines {
			m.add(l.SKU, ops[i].reserve.deadline.UnixMilli())
		}
	}
	g.run(ctx, calls, m)
	return out
}

// reserveCall is one reserve script call over the orders at idx.
func (g *Gate) reserveCall(ops []op, idx []int, out []opRes) scriptCall {
	c := scriptCall{script: reserveScript, keys: make([]string, 0, 5*len(idx)), args: make([]any, 1, 1+5*len(idx)), marked: true,
		sku: ops[idx[0]].reserve.lines[0].SKU, effect: reserveEffect}
	c.args[0] = strconv.Itoa(len(idx))
	for _, i := range idx {
		r := ops[i].reserve
		c.args = append(c.args, r.orderID, r.token, strconv.FormatInt(r.deadline.UnixMilli(), 10), strconv.Itoa(len(r.lines)))
		for _, l := range r.lines {
			c.keys = append(c.keys, lineKeys(l.SKU, r.orderID)...)
			c.args = append(c.args, strconv.FormatInt(l.Qty, 10))
		}
	}
	c.reply = func(vals []any, err error) {
		for k, i := range idx {
			r := ops[i].reserve
			if err == nil && len(vals) < 4*(k+1) {
				err = fmt.Errorf("reserve script answered %d values for %d orders", len(vals), len(idx))
			}
			if err != nil {
				out[i].reserve.err = fmt.Errorf("reserve %s: %w", r.orderID, err)
				continue
			}
			out[i].reserve.r, out[i].reserve.err = reserveReply(*r, vals[4*k:4*k+4])
		}
	}
	return c
}

// reserveReply turns one order's four reply values into its outcome or its
// typed error.
func reserveReply(r reserveReq, v []any) (Reservation, error) {
	code, ok := v[0].(int64)
	line, _ := v[1].(int64)
	n, _ := v[2].(int64)
	tok, _ := v[3].(string)
	if !ok {
		return Reservation{}, fmt.Errorf("reserve %s: unexpected script reply %v", r.orderID, v)
	}
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
		res, ok := g.ops.Do(ctx, op{commit: &commitReq{orderID: orderID, token: token, skus: grp}})
		if !ok {
			return out, fmt.Errorf("commit %s: %w", orderID, ctx.Err())
		}
		if res.commit.err != nil {
			return out, res.commit.err
		}
		out.Units += res.commit.r.Units
		out.Missing += res.commit.r.Missing
		out.Released += res.commit.r.Released
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

// commitCall is one commit script call over the orders at idx.
func (g *Gate) commitCall(ops []op, idx []int, out []opRes) scriptCall {
	c := scriptCall{script: commitScript, keys: make([]string, 0, 5*len(idx)), args: make([]any, 2, 2+3*len(idx)),
		sku: ops[idx[0]].commit.skus[0], effect: commitEffect}
	c.args[0], c.args[1] = strconv.FormatInt(max(g.retention.Milliseconds(), 1), 10), strconv.Itoa(len(idx))
	for _, i := range idx {
		r := ops[i].commit
		c.args = append(c.args, r.orderID, r.token, strconv.Itoa(len(r.skus)))
		c.keys = append(c.keys, holdKeys(r.orderID, r.skus)...)
	}
	c.reply = func(vals []any, err error) {
		for k, i := range idx {
			r := ops[i].commit
			if err == nil && len(vals) < 4*(k+1) {
				err = fmt.Errorf("commit script answered %d values for %d orders", len(vals), len(idx))
			}
			if err != nil {
				out[i].commit.err = fmt.Errorf("commit %s: %w", r.orderID, err)
				continue
			}
			units, _ := vals[4*k].(int64)
			missing, _ := vals[4*k+2].(int64)
			released, _ := vals[4*k+3].(int64)
			if units < 0 {
				out[i].commit.err = fmt.Errorf("%w: commit script refused its arguments or found a corrupt counter", ErrInvalid)
				continue
			}
			out[i].commit.r = CommitResult{Units: units, Missing: int(missing), Released: released}
		}
	}
	return c
}

// chunk splits the requests at idx (each one slot group, named by its first
// SKU, with its line count) into script calls: one per hash slot, each at
// most maxBatchLines lines. On a single node every request shares one call,
// up to the line bound.
func (g *Gate) chunk(idx []int, of func(i int) (sku string, lines int)) [][]int {
	var calls [][]int
	open := map[int]int{} // slot -> index in calls of the call being filled
	lines := map[int]int{}
	for _, i := range idx {
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

// run sends a batch's index marks and script calls: a lone call with no
// marks directly (EVALSHA, EVAL on NOSCRIPT), anything more in one
// pipeline, marks first, which a cluster client splits by node. With
// WaitReplicas the marks go first on their own and each master's calls then
// run with their WAIT (runWaited).
func (g *Gate) run(ctx context.Context, calls []scriptCall, m marks) {
	if g.waitReplicas > 0 {
		g.runMarkedWaited(ctx, calls, m)
		return
	}
	if len(calls) == 1 && len(m) == 0 {
		c := calls[0]
		vals, err := c.script.Run(ctx, g.rdb, c.keys, c.args...).Slice()
		c.reply(vals, err)
		return
	}
	var markCmds []*redis.IntCmd
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		markCmds = m.queue(ctx, p)
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	var markErr error
	for _, c := range markCmds {
		if err := c.Err(); err != nil {
			markErr = fmt.Errorf("mark hold index: %w", err)
			break
		}
	}
	for i, c := range calls {
		vals, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A SCRIPT FLUSH or a restarted Redis: this call alone again,
			// through Run, which loads the script.
			vals, err = c.script.Run(ctx, g.rdb, c.keys, c.args...).Slice()
		}
		if err == nil && c.marked && markErr != nil {
			err = markErr
		}
		c.reply(vals, err)
	}
}

// runMarkedWaited is run under WaitReplicas. The index marks need no WAIT:
// a mark a failover loses is found again by the sweeper's full pass. A
// call that relies on them does not run when they fail, and its caller
// retries, as in run.
func (g *Gate) runMarkedWaited(ctx context.Context, calls []scriptCall, m marks) {
	if len(m) > 0 {
		var cmds []*redis.IntCmd
		_, _ = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			cmds = m.queue(ctx, p)
			return nil
		})
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				err = fmt.Errorf("mark hold index: %w", err)
				rest := calls[:0:0]
				for _, c := range calls {
					if c.marked {
						c.reply(nil, err)
					} else {
						rest = append(rest, c)
					}
				}
				calls = rest
				break
			}
		}
	}
	if len(calls) > 0 {
		g.runWaited(ctx, calls)
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

// CancelResult reports what Cancel did.
type CancelResult struct {
	// Returned is the units moved from sold back to available.
	Returned int64
	// Released is the units of holds never committed (the order's row was
	// confirmed, its commit had not run) given back from held.
	Released int64
	// Already counts SKUs given back by an earlier Cancel.
	Already int
}

// Cancel gives back to available, once, what orderID sold on lines: a
// confirmed order cancelled after its sale (cancel.lua). The quantities are
// the order's row's, since the hold's tombstone may be gone; the hold,
// rewritten "returned" and kept for the gate's retention window, makes a
// second Cancel change nothing. A hold still held under token, the row's
// (the row was confirmed, the commit had not run), is released instead; one
// under another token was a later delivery's, and goes back besides the
// units the sale sold. After the retention window
// only the caller can tell a done Cancel from a new one: the order's row
// records it (docs/design.md, "Checkout").
//
// Errors: *NotStockedError for a SKU whose counters Redis lost (nothing
// changed; retry after stockctl rebuild), ErrInvalid for bad arguments or a
// sold counter below what would go back (nothing changed), or a Redis
// error, after which a retry finds out what was done.
func (g *Gate) Cancel(ctx context.Context, orderID, token string, lines []Line) (CancelResult, error) {
	var out CancelResult
	if err := checkOrderID(orderID); err != nil {
		return out, err
	}
	if err := CheckLines(lines); err != nil {
		return out, err
	}
	for _, grp := range g.groups(lines) {
		skus := make([]string, len(grp))
		args := []any{strconv.FormatInt(max(g.retention.Milliseconds(), 1), 10), orderID, token}
		for i, l := range grp {
			skus[i] = l.SKU
			args = append(args, strconv.FormatInt(l.Qty, 10))
		}
		res, err := runInts(ctx, cancelScript, g.rdb, holdKeys(orderID, skus), args, 3)
		if err != nil {
			return out, fmt.Errorf("cancel %s: %w", orderID, err)
		}
		var at Line
		if res[1] >= 1 && int(res[1]) <= len(grp) {
			at = grp[res[1]-1]
		}
		switch {
		case res[0] == -1:
			return out, &NotStockedError{SKU: at.SKU}
		case res[0] == -4:
			return out, fmt.Errorf("%w: cancel %s: %s has %d sold, less than its line of %d", ErrInvalid, orderID, at.SKU, res[2], at.Qty)
		case res[0] < 0:
			return out, fmt.Errorf("%w: cancel script refused its arguments or found a corrupt counter", ErrInvalid)
		}
		out.Returned += res[0]
		out.Released += res[1]
		out.Already += int(res[2])
	}
	return out, nil
}
