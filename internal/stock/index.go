package stock

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/lua"
)

// The hold index (docs/design.md, "The hold index"): the SKUs that may hold
// something, so that the sweeper's work follows the open holds and not the
// catalogue. Each SKU's deadlines set stays the source of truth; the index
// only says where to look.
//
// Redis Cluster: the reserve script may touch only its SKU's slot, and the
// index cannot live there (the sweeper would have to read one key per
// slot). So every reserve call marks its SKUs with a ZADD of its own, in the
// same pipeline, into IndexBuckets sorted sets with hash tags of their own,
// spread over the cluster's nodes. A mark is the order's hold deadline,
// kept only when it is the latest (ZADD GT), so an entry's score is the
// latest deadline any reserve marked the SKU with.

// IndexBuckets is how many sorted sets the index is split into: enough that
// under Redis Cluster the marks spread over the nodes instead of all going
// to one key, few enough that an idle sweep reads them in one round trip.
const IndexBuckets = 16

// HoldingKey is bucket b of the index: a sorted set of SKUs that may hold
// something, each scored by the latest hold deadline marked for it (unix
// ms). Its hash tag, {holding:B}, is no SKU's: SKUs have no colon.
func HoldingKey(b int) string { return keyPrefix + "{holding:" + strconv.Itoa(b) + "}" }

// holdingBucket is the bucket of sku's entry.
func holdingBucket(sku string) int { return Slot(sku) % IndexBuckets }

var unindexScript = redis.NewScript(lua.Unindex)

// marks are the index entries one batch of reserves writes: per bucket,
// each SKU with the latest deadline among the batch's orders.
type marks map[int]map[string]int64

func (m marks) add(sku string, deadline int64) {
	b := holdingBucket(sku)
	if m[b] == nil {
		m[b] = map[string]int64{}
	}
	if d, ok := m[b][sku]; !ok || deadline > d {
		m[b][sku] = deadline
	}
}

// queue adds one ZADD GT per bucket to p, in bucket order.
func (m marks) queue(ctx context.Context, p redis.Pipeliner) []*redis.IntCmd {
	var cmds []*redis.IntCmd
	for _, b := range slices.Sorted(maps.Keys(m)) {
		zs := make([]redis.Z, 0, len(m[b]))
		for _, sku := range slices.Sorted(maps.Keys(m[b])) {
			zs = append(zs, redis.Z{Score: float64(m[b][sku]), Member: sku})
		}
		// GT keeps the latest deadline, and still adds a missing entry.
		cmds = append(cmds, p.ZAddGT(ctx, HoldingKey(b), zs...))
	}
	return cmds
}

// indexEntry is one SKU of the index and the latest deadline marked for it.
type indexEntry struct {
	sku    string
	bucket int
	score  int64
}

// indexPage bounds the entries read per bucket per round trip, and the SKUs
// looked at per pipeline.
const indexPage = 256

// indexed lists every entry of the index, sorted by SKU.
func (g *Gate) indexed(ctx context.Context) ([]indexEntry, error) {
	var out []indexEntry
	open := make([]int, IndexBuckets) // next offset per bucket; -1 once read to its end
	for {
		cmds := map[int]*redis.ZSliceCmd{}
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for b, off := range open {
				if off >= 0 {
					cmds[b] = p.ZRangeWithScores(ctx, HoldingKey(b), int64(off), int64(off+indexPage-1))
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read hold index: %w", err)
		}
		for b, c := range cmds {
			for _, z := range c.Val() {
				sku, _ := z.Member.(string)
				out = append(out, indexEntry{sku: sku, bucket: b, score: int64(z.Score)})
			}
			if len(c.Val()) < indexPage {
				open[b] = -1
			} else {
				open[b] += indexPage
			}
		}
		if !slices.ContainsFunc(open, func(off int) bool { return off >= 0 }) {
			break
		}
	}
	slices.SortFunc(out, func(a, b indexEntry) int { return strings.Compare(a.sku, b.sku) })
	return out, nil
}

// ExpiredHolds lists up to limit holds whose deadline is at or before now,
// per SKU in SKU order, each SKU's by deadline, across the SKUs of the hold
// index. The sweeper decides what to do with each. On the way it drops from
// the index every SKU whose deadlines set is empty and whose latest mark is
// past: nothing it marked can still be held, and a reserve that marks it
// again comes with a later deadline (lua/unindex.lua).
//
// A hold whose SKU the index lacks (Redis lost the mark but not the hold,
// or the hold predates the index) is found by ScanHolding, which puts the
// SKU back.
func (g *Gate) ExpiredHolds(ctx context.Context, now time.Time, limit int) ([]Hold, error) {
	entries, err := g.indexed(ctx)
	if err != nil {
		return nil, err
	}
	nowMS := now.UnixMilli()
	upTo := strconv.FormatInt(nowMS, 10)
	var out []Hold
	for chunk := range slices.Chunk(entries, indexPage) {
		if len(out) >= limit {
			break
		}
		due := make([]*redis.ZSliceCmd, len(chunk))
		size := make([]*redis.IntCmd, len(chunk))
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range chunk {
				due[i] = p.ZRangeByScoreWithScores(ctx, DeadlinesKey(e.sku), &redis.ZRangeBy{
					Min: "-inf", Max: upTo, Count: int64(limit - len(out)),
				})
				if e.score <= nowMS {
					size[i] = p.ZCard(ctx, DeadlinesKey(e.sku))
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("expired holds: %w", err)
		}
		var stale []indexEntry
		for i, e := range chunk {
			for _, z := range due[i].Val() {
				if len(out) < limit {
					out = append(out, Hold{SKU: e.sku, OrderID: z.Member.(string), Deadline: time.UnixMilli(int64(z.Score))})
				}
			}
			if size[i] != nil && size[i].Val() == 0 {
				stale = append(stale, e)
			}
		}
		if err := g.unindex(ctx, stale); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// unindex drops entries from the index unless a reserve marked them since.
func (g *Gate) unindex(ctx context.Context, entries []indexEntry) error {
	if len(entries) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(entries))
	// Each command's own error is looked at below.
	_, _ = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = unindexScript.EvalSha(ctx, p, []string{HoldingKey(e.bucket)}, e.sku, strconv.FormatInt(e.score, 10))
		}
		return nil
	})
	for i, e := range entries {
		err := cmds[i].Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			err = unindexScript.Run(ctx, g.rdb, []string{HoldingKey(e.bucket)}, e.sku, strconv.FormatInt(e.score, 10)).Err()
		}
		if err != nil {
			return fmt.Errorf("unindex %s: %w", e.sku, err)
		}
	}
	return nil
}

// OpenHolds counts the holds not yet released or committed, across the SKUs
// of the hold index: one command per SKU that may hold something, none for
// the rest of the catalogue.
func (g *Gate) OpenHolds(ctx context.Context) (int64, error) {
	entries, err := g.indexed(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for chunk := range slices.Chunk(entries, indexPage) {
		cmds := make([]*redis.IntCmd, len(chunk))
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range chunk {
				cmds[i] = p.ZCard(ctx, DeadlinesKey(e.sku))
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("count holds: %w", err)
		}
		for _, c := range cmds {
			n += c.Val()
		}
	}
	return n, nil
}

// ScanCursor is where a full pass of ScanHolding stands: a node (0 unless
// Redis Cluster, where the masters are taken in address order) and a SCAN
// cursor on it. The zero value starts a pass.
type ScanCursor struct {
	Node   int
	Cursor uint64
}

// deadlinesPattern matches every SKU's deadlines key and nothing else:
// order ids and SKUs have no braces.
const deadlinesPattern = keyPrefix + "{*}:deadlines"

// ScanHolding takes one step of the full pass that backs the hold index: a
// SCAN of about count keys from cur, for deadlines sets (which exist only
// while their SKU holds something, since the last ZREM deletes the key),
// and puts every SKU found that the index lacks back into it, scored by its
// latest hold deadline. It returns the cursor of the next step (zero once
// the pass has seen every key) and how many SKUs it put back: each is a
// hold the sweeper would have missed until now.
//
// SCAN returns every key that exists for the whole pass at least once, so
// a pass finds every hold older than the pass. Under Redis Cluster each
// master is scanned in turn; a pass during a resharding may miss keys that
// moved, and the next pass finds them.
func (g *Gate) ScanHolding(ctx context.Context, cur ScanCursor, count int64) (ScanCursor, int, error) {
	nodes, err := g.scanNodes(ctx)
	if err != nil {
		return ScanCursor{}, 0, err
	}
	if cur.Node >= len(nodes) {
		return ScanCursor{}, 0, nil
	}
	keys, next, err := nodes[cur.Node].ScanType(ctx, cur.Cursor, deadlinesPattern, count, "zset").Result()
	if err != nil {
		return ScanCursor{}, 0, fmt.Errorf("scan for holds: %w", err)
	}
	nc := ScanCursor{Node: cur.Node, Cursor: next}
	if next == 0 {
		nc = ScanCursor{Node: cur.Node + 1}
		if nc.Node >= len(nodes) {
			nc = ScanCursor{}
		}
	}
	var skus []string
	for _, k := range keys {
		sku := strings.TrimSuffix(strings.TrimPrefix(k, keyPrefix+"{"), "}:deadlines")
		if CheckSKU(sku) == nil && DeadlinesKey(sku) == k {
			skus = append(skus, sku)
		}
	}
	added, err := g.reindex(ctx, skus)
	return nc, added, err
}

// reindex puts skus into the index where they are missing, each scored by
// the latest deadline in its deadlines set, and returns how many it added.
func (g *Gate) reindex(ctx context.Context, skus []string) (int, error) {
	if len(skus) == 0 {
		return 0, nil
	}
	last := make([]*redis.ZSliceCmd, len(skus))
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range skus {
			last[i] = p.ZRangeWithScores(ctx, DeadlinesKey(s), -1, -1)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reindex: %w", err)
	}
	m := marks{}
	for i, s := range skus {
		if zs := last[i].Val(); len(zs) == 1 {
			m.add(s, int64(zs[0].Score))
		}
	}
	if len(m) == 0 {
		return 0, nil
	}
	var cmds []*redis.IntCmd
	_, err = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b, entries := range m {
			zs := make([]redis.Z, 0, len(entries))
			for sku, d := range entries {
				zs = append(zs, redis.Z{Score: float64(d), Member: sku})
			}
			// NX: an entry that is there already has a score no earlier
			// than any deadline its reserves marked; leave it.
			cmds = append(cmds, p.ZAddNX(ctx, HoldingKey(b), zs...))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reindex: %w", err)
	}
	added := 0
	for _, c := range cmds {
		added += int(c.Val())
	}
	return added, nil
}

// scanNodes are the servers a full pass scans: every master of a Redis
// Cluster in address order, or the one server.
func (g *Gate) scanNodes(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := g.rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{g.rdb}, nil
	}
	type node struct {
		addr string
		c    *redis.Client
	}
	ch := make(chan node, 64)
	var nodes []node
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := range ch {
			nodes = append(nodes, n)
		}
	}()
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		ch <- node{c.Options().Addr, c}
		return nil
	})
	close(ch)
	<-done
	if err != nil {
		return nil, fmt.Errorf("list cluster masters: %w", err)
	}
	slices.SortFunc(nodes, func(a, b node) int { return strings.Compare(a.addr, b.addr) })
	out := make([]redis.Cmdable, len(nodes))
	for i, n := range nodes {
		out[i] = n.c
	}
	return out, nil
}
