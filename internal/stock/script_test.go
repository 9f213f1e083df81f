package stock_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/lua"
)

// keys5 is the five-key layout of one line in reserve, release and commit.
func keys5(sku, order string) []string {
	return []string{stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku), stock.HoldKey(sku, order), stock.DeadlinesKey(sku)}
}

func concat(ks ...[]string) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k...)
	}
	return out
}

func strs(ss ...string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// scriptCase is one call made straight to a script, bypassing every check
// the Go API does.
type scriptCase struct {
	name string
	keys []string
	args []any
	// want is the reply when the call is not refused with the script's
	// bad-arguments code. The scripts check only what could corrupt
	// counters (internal/stock checks the rest), so some malformed calls
	// are answered as the ordinary call they amount to: no lines to
	// reserve, a line that is short, a hold that is not there.
	want []int64
	// raises is a call that Redis refuses before the script's first write:
	// a deadline ZADD will not take, or a key or order id that is missing
	// altogether.
	raises bool
}

// scriptFixture gives the scripts something to damage: stock on A and B, a
// live hold of order "held" on A (2 units), a committed tombstone of order
// "done" on B (1 unit) and a rate-limit count for customer c1.
func scriptFixture(t *testing.T, g *stock.Gate, rdb *redis.Client, deadline time.Time) {
	t.Helper()
	ctx := context.Background()
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 10)
	if _, err := g.Reserve(ctx, "held", []stock.Line{{SKU: "A", Qty: 2}}, deadline); err != nil {
		t.Fatalf("Reserve(held) = %v, want nil", err)
	}
	if _, err := g.Reserve(ctx, "done", []stock.Line{{SKU: "B", Qty: 1}}, deadline); err != nil {
		t.Fatalf("Reserve(done) = %v, want nil", err)
	}
	if _, err := g.Commit(ctx, "done", []string{"B"}); err != nil {
		t.Fatalf("Commit(done) = %v, want nil", err)
	}
	if err := rdb.Set(ctx, stock.RateKey("c1"), "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// counters3 is the key layout of set, add and rebuild.
func counters3(sku string) []string {
	return []string{stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku)}
}

// evalVia runs src with EVAL or with EVALSHA of sha.
func evalVia(ctx context.Context, rdb *redis.Client, via, src, sha string, keys []string, args []any) ([]int64, error) {
	if via == "EVAL" {
		return rdb.Eval(ctx, src, keys, args...).Int64Slice()
	}
	return rdb.EvalSha(ctx, sha, keys, args...).Int64Slice()
}

// TestScriptsRefuseBadArguments sends malformed and malicious KEYS and ARGV
// to every script with both EVAL and EVALSHA, and checks that each is
// refused (the script's bad-arguments code, or an error Redis raises before
// the first write) or answered as the harmless call it amounts to, and that
// not one key of the database changed. The fixture has stock, a live hold
// and a tombstone, so a call that slipped through would have something to
// change.
func TestScriptsRefuseBadArguments(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	deadline := time.Now().Add(time.Hour)
	scriptFixture(t, g, rdb, deadline)
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)

	// Keys of one line that mix two SKUs: had they run, units would move
	// from one SKU's counters to another's.
	mixed := []string{stock.AvailKey("B"), stock.HeldKey("A"), stock.SoldKey("A"), stock.HoldKey("A", "held"), stock.DeadlinesKey("A")}
	mixedNew := []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B"), stock.HoldKey("B", "new"), stock.DeadlinesKey("B")}

	badQty := map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3", "hex": "0x10",
		"non-numeric": "abc", "leading space": " 1", "trailing space": "1 ", "huge": "99999999999999999999",
		"empty": "", "plus sign": "+1",
	}

	var reserve []scriptCase
	for name, q := range badQty {
		reserve = append(reserve,
			scriptCase{name: "qty " + name, keys: keys5("A", "new"), args: strs("new", dl, q)},
			scriptCase{name: "second line qty " + name, keys: concat(keys5("A", "new"), keys5("B", "new")), args: strs("new", dl, "1", q)},
		)
	}
	reserve = append(reserve,
		// MaxQty is internal/stock's: past it a line is just short (A has 8, B 9).
		scriptCase{name: "qty over max", keys: keys5("A", "new"), args: strs("new", dl, "10001"), want: []int64{0, 1, 8}},
		scriptCase{name: "second line qty over max", keys: concat(keys5("A", "new"), keys5("B", "new")), args: strs("new", dl, "1", "10001"), want: []int64{0, 2, 9}},
		// The first write, ZADD, takes the deadline or raises.
		scriptCase{name: "deadline non-numeric", keys: keys5("A", "new"), args: strs("new", "soon", "1"), raises: true},
		scriptCase{name: "deadline empty", keys: keys5("A", "new"), args: strs("new", "", "1"), raises: true},
		scriptCase{name: "missing order id", keys: keys5("A", "new")},
		scriptCase{name: "empty order id", keys: keys5("A", ""), args: strs("", dl, "1")},
		scriptCase{name: "order id over 64 bytes", keys: keys5("A", strings.Repeat("o", 65)), args: strs(strings.Repeat("o", 65), dl, "1")},
		// The lines are the whole groups of five keys: with none, nothing
		// is reserved.
		scriptCase{name: "no lines", args: strs("new", dl), want: []int64{1, 0, 0}},
		scriptCase{name: "no keys", args: strs("new", dl, "1"), want: []int64{1, 0, 0}},
		scriptCase{name: "four keys", keys: keys5("A", "new")[:4], args: strs("new", dl, "1"), want: []int64{1, 0, 0}},
		scriptCase{name: "keys for two lines, one qty", keys: concat(keys5("A", "new"), keys5("B", "new")), args: strs("new", dl, "1")},
		scriptCase{name: "duplicated sku", keys: concat(keys5("A", "new"), keys5("A", "new")), args: strs("new", dl, "1", "1")},
		scriptCase{name: "duplicated sku after another", keys: concat(keys5("A", "new"), keys5("B", "new"), keys5("A", "new")), args: strs("new", dl, "1", "1", "1")},
		scriptCase{name: "hold key of another order", keys: keys5("A", "other"), args: strs("new", dl, "1")},
		scriptCase{name: "keys of two skus in one line", keys: mixedNew, args: strs("new", dl, "1")},
	)

	release := []scriptCase{
		{name: "missing order id", keys: keys5("A", "held"), raises: true},
		// No order has an empty id (reserve refuses one), so no hold is there.
		{name: "empty order id", keys: keys5("A", ""), args: strs(""), want: []int64{0, 0}},
		{name: "no keys", args: strs("held"), want: []int64{0, 0}},
		{name: "four keys", keys: keys5("A", "held")[:4], args: strs("held"), want: []int64{0, 0}},
		{name: "duplicated sku", keys: concat(keys5("A", "held"), keys5("A", "held")), args: strs("held")},
		{name: "hold key of another order", keys: keys5("A", "held"), args: strs("someone-else")},
		{name: "keys of two skus in one line", keys: mixed, args: strs("held")},
	}

	var commit []scriptCase
	for name, r := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3",
		"non-numeric": "abc", "empty": "", "huge": "99999999999999999999",
	} {
		commit = append(commit, scriptCase{name: "retention " + name, keys: keys5("A", "held"), args: strs("held", r)})
	}
	commit = append(commit,
		scriptCase{name: "missing order id", keys: keys5("A", "held")},
		scriptCase{name: "missing retention", keys: keys5("A", "held"), args: strs("held")},
		scriptCase{name: "empty order id", keys: keys5("A", ""), args: strs("", "1000"), want: []int64{0, 0, 1}},
		scriptCase{name: "no keys", args: strs("held", "1000"), want: []int64{0, 0, 0}},
		scriptCase{name: "four keys", keys: keys5("A", "held")[:4], args: strs("held", "1000"), want: []int64{0, 0, 0}},
		scriptCase{name: "duplicated sku", keys: concat(keys5("A", "held"), keys5("A", "held")), args: strs("held", "1000")},
		scriptCase{name: "hold key of another order", keys: keys5("A", "held"), args: strs("someone-else", "1000")},
		scriptCase{name: "keys of two skus in one line", keys: mixed, args: strs("held", "1000")},
	)

	adjust := func(add bool) []scriptCase {
		var out []scriptCase
		for name, q := range map[string]string{
			"negative": "-1", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc", "empty": "",
			"leading space": " 1", "over max": "1000000000001", "huge": "99999999999999999999",
		} {
			out = append(out, scriptCase{name: "qty " + name, keys: counters3("A"), args: strs(q)})
		}
		if add {
			// Go's Add refuses 0; in the script it rewrites what is there.
			out = append(out, scriptCase{name: "qty zero", keys: counters3("A"), args: strs("0"), want: []int64{8, 2, 0}})
		}
		return append(out,
			scriptCase{name: "missing qty", keys: counters3("A")},
			scriptCase{name: "two keys", keys: counters3("A")[:2], args: strs("1")},
			scriptCase{name: "counters of two skus", keys: []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B")}, args: strs("1")},
		)
	}

	var rebuild []scriptCase
	for name, q := range map[string]string{
		"negative": "-1", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc", "empty": "",
		"over max": "1000000000001", "huge": "99999999999999999999",
	} {
		rebuild = append(rebuild,
			scriptCase{name: "stocked " + name, keys: counters3("A"), args: strs(q, "0")},
			scriptCase{name: "sold " + name, keys: counters3("A"), args: strs("10", q)},
		)
	}
	rebuild = append(rebuild,
		scriptCase{name: "missing sold", keys: counters3("A"), args: strs("10")},
		scriptCase{name: "two keys", keys: counters3("A")[:2], args: strs("10", "0")},
		scriptCase{name: "counters of two skus", keys: []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B")}, args: strs("10", "0")},
	)

	var rate []scriptCase
	for name, v := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc",
		"empty": "", "huge": "99999999999999999999",
	} {
		rate = append(rate,
			scriptCase{name: "limit " + name, keys: []string{stock.RateKey("c1")}, args: strs(v, "1000")},
			scriptCase{name: "window " + name, keys: []string{stock.RateKey("c1")}, args: strs("5", v)},
		)
	}
	rate = append(rate,
		scriptCase{name: "missing window", keys: []string{stock.RateKey("c1")}, args: strs("5")},
		scriptCase{name: "no keys", args: strs("5", "1000"), raises: true},
	)

	scripts := []struct {
		name  string
		src   string
		cases []scriptCase
	}{
		{"reserve", lua.Reserve, reserve},
		{"release", lua.Release, release},
		{"commit", lua.Commit, commit},
		{"set", lua.Set, adjust(false)},
		{"add", lua.Add, adjust(true)},
		{"rebuild", lua.Rebuild, rebuild},
		{"ratelimit", lua.RateLimit, rate},
	}

	before := snapshot(t, rdb)
	for _, s := range scripts {
		sha, err := rdb.ScriptLoad(ctx, s.src).Result()
		if err != nil {
			t.Fatalf("SCRIPT LOAD %s: %v", s.name, err)
		}
		for _, c := range s.cases {
			for _, via := range []string{"EVAL", "EVALSHA"} {
				res, err := evalVia(ctx, rdb, via, s.src, sha, c.keys, c.args)
				switch {
				case c.raises:
					if err == nil {
						t.Errorf("%s %s (%s) = %v, want an error", via, s.name, c.name, res)
					}
				case err != nil:
					t.Errorf("%s %s (%s) = error %v, want a reply", via, s.name, c.name, err)
				case c.want != nil:
					if !slices.Equal(res, c.want) {
						t.Errorf("%s %s (%s) = %v, want %v", via, s.name, c.name, res, c.want)
					}
				case len(res) == 0 || res[0] != -2:
					t.Errorf("%s %s (%s) = %v, want [-2 ...] (bad arguments)", via, s.name, c.name, res)
				}
				if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
					t.Fatalf("%s %s (%s) changed the database (-before +after):\n%s", via, s.name, c.name, diff)
				}
			}
		}
	}
}

// TestScriptsIgnoreHarmlessArguments covers the malformed calls the scripts
// no longer refuse, because they cannot corrupt counters. Extra KEYS and
// ARGV are ignored (for release, the extra argument is a quantity from the
// caller), so each such call must have exactly the effect of its twin, the
// well-formed call without them. A deadline before 1970 makes an ordinary
// hold that is already expired. After every call, each SKU's held counter
// must still be the sum of its held holds, each with a deadline entry.
func TestScriptsIgnoreHarmlessArguments(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	deadline := time.Now().Add(time.Hour)
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)
	type call struct {
		keys []string
		args []any
	}
	type harmless struct {
		name string
		src  string
		call call
		// twin is the well-formed call with the same effect; nil when there
		// is none, and check says what the call did instead.
		twin  *call
		want  []int64
		check func(t *testing.T)
	}

	var cases []harmless
	for _, w := range []struct {
		name, src string
		call
		want []int64
	}{
		{"reserve", lua.Reserve, call{keys5("A", "new"), strs("new", dl, "1")}, []int64{1, 0, 0}},
		{"release", lua.Release, call{keys5("A", "held"), strs("held")}, []int64{2, 1}},
		{"commit", lua.Commit, call{keys5("A", "held"), strs("held", "1000")}, []int64{2, 1, 0}},
		{"set", lua.Set, call{counters3("A"), strs("1")}, []int64{1, 2, 0}},
		{"add", lua.Add, call{counters3("A"), strs("1")}, []int64{9, 2, 0}},
		{"rebuild", lua.Rebuild, call{counters3("C"), strs("10", "0")}, []int64{10, 0, 0}},
		{"ratelimit", lua.RateLimit, call{[]string{stock.RateKey("c1")}, strs("5", "1000")}, []int64{1, 2}},
	} {
		cases = append(cases,
			harmless{name: w.name + " with an extra key", src: w.src, want: w.want, twin: &w.call,
				call: call{append(slices.Clone(w.keys), "sg:{A}:extra"), w.args}},
			harmless{name: w.name + " with an extra argument", src: w.src, want: w.want, twin: &w.call,
				call: call{w.keys, append(slices.Clone(w.args), "5")}},
		)
	}
	cases = append(cases, harmless{
		name: "reserve with a deadline before 1970", src: lua.Reserve,
		call: call{keys5("A", "new"), strs("new", "-1", "1")},
		want: []int64{1, 0, 0},
		check: func(t *testing.T) {
			wantLevels(t, g, stock.Levels{SKU: "A", Available: 7, Held: 3, Stocked: true})
			holds, err := g.ExpiredHolds(ctx, time.Now(), 10)
			want := []stock.Hold{{SKU: "A", OrderID: "new", Deadline: time.UnixMilli(-1)}}
			if err != nil || !cmp.Equal(holds, want) {
				t.Errorf("ExpiredHolds = %v, %v, want %v, nil (the sweeper releases it)", holds, err, want)
			}
		},
	})

	for _, tt := range cases {
		sha, err := rdb.ScriptLoad(ctx, tt.src).Result()
		if err != nil {
			t.Fatalf("SCRIPT LOAD: %v", err)
		}
		for _, via := range []string{"EVAL", "EVALSHA"} {
			reset := func() {
				if err := rdb.FlushDB(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				scriptFixture(t, g, rdb, deadline)
			}
			var twin map[string]string
			if tt.twin != nil {
				reset()
				if _, err := evalVia(ctx, rdb, via, tt.src, sha, tt.twin.keys, tt.twin.args); err != nil {
					t.Fatalf("%s twin of %s = %v, want nil", via, tt.name, err)
				}
				twin = snapshot(t, rdb)
			}
			reset()
			res, err := evalVia(ctx, rdb, via, tt.src, sha, tt.call.keys, tt.call.args)
			if err != nil || !slices.Equal(res, tt.want) {
				t.Errorf("%s %s = %v, %v, want %v, nil", via, tt.name, res, err, tt.want)
			}
			if twin != nil {
				if diff := cmp.Diff(twin, snapshot(t, rdb)); diff != "" {
					t.Errorf("%s %s differs from its twin (-twin +call):\n%s", via, tt.name, diff)
				}
			}
			if tt.check != nil {
				tt.check(t)
			}
			for _, sku := range []string{"A", "B"} {
				holdsAddUp(t, rdb, sku)
			}
		}
	}
}

// holdsAddUp fails the test unless sku's held counter is the sum of the
// quantities of its held holds and its deadlines zset names exactly the
// orders holding them.
func holdsAddUp(t *testing.T, rdb *redis.Client, sku string) {
	t.Helper()
	ctx := context.Background()
	prefix := stock.HoldKey(sku, "")
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS %s*: %v", prefix, err)
	}
	var sum int64
	var holding []string
	for _, k := range keys {
		h := rdb.HGetAll(ctx, k).Val()
		if h["state"] != "held" {
			continue
		}
		q, err := strconv.ParseInt(h["qty"], 10, 64)
		if err != nil {
			t.Fatalf("hold %s qty %q: %v", k, h["qty"], err)
		}
		sum += q
		holding = append(holding, strings.TrimPrefix(k, prefix))
	}
	held, err := rdb.Get(ctx, stock.HeldKey(sku)).Int64()
	if err != nil || held != sum {
		t.Errorf("held of %s = %d, %v, want %d (the sum of its held holds)", sku, held, err, sum)
	}
	members := rdb.ZRange(ctx, stock.DeadlinesKey(sku), 0, -1).Val()
	slices.Sort(members)
	slices.Sort(holding)
	if !slices.Equal(members, holding) {
		t.Errorf("deadlines of %s = %v, want the orders holding it, %v", sku, members, holding)
	}
}

// TestScriptsRefuseCorruptCounters puts values in the keys that only a hand
// edit could leave there (non-integer counters, keys of the wrong type), and
// checks that no script writes anything before noticing: Redis has no
// rollback, so an error raised halfway through a multi-line script would
// leave half its writes behind.
func TestScriptsRefuseCorruptCounters(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name    string
		corrupt func(ctx context.Context, rdb redis.Cmdable) error
		call    func(ctx context.Context, g *stock.Gate) error
	}{
		{
			name: "reserve with fractional available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "5.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with exponent available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "1e3", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with non-numeric held on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.HeldKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with held of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.HeldKey("B")).Err(); err != nil {
					return err
				}
				return rdb.HSet(ctx, stock.HeldKey("B"), "x", "1").Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "single-line reserve with deadlines of the wrong type",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "release with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Commit(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "release with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with fractional sold on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.SoldKey("B"), "0.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Commit(ctx, "held", []string{"A", "B"})
				return err
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			g, rdb := newGate(t, stock.Config{})
			stockSKU(t, g, "A", 10)
			stockSKU(t, g, "B", 10)
			lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}
			if _, err := g.Reserve(ctx, "held", lines, time.Now().Add(time.Hour)); err != nil {
				t.Fatalf("Reserve(held) = %v, want nil", err)
			}
			if err := tt.corrupt(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, rdb)

			err := tt.call(ctx, g)
			if err == nil {
				t.Errorf("call = nil, want an error")
			}
			if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
				t.Errorf("call changed the database (-before +after):\n%s", diff)
			}
		})
	}
}

// TestScriptFlushMidRun flushes the script cache while concurrent reserves
// are running: each call must still succeed through the EVAL fallback, and
// the counters must add up. It runs on a redis-server of its own, because
// SCRIPT FLUSH is server-wide and would disturb the package's other tests.
func TestScriptFlushMidRun(t *testing.T) {
	t.Parallel()

	const (
		workers   = 16
		perWorker = 40
		total     = workers * perWorker
	)
	ctx := context.Background()
	r := testsvc.NewRedis(t)
	rdb := r.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })

	// Count EVAL fallbacks, to prove the flushes really forced some.
	var evals atomic.Int64
	rdb.AddHook(evalCounter{&evals})
	g := stock.New(rdb, stock.Config{})
	stockSKU(t, g, "hot", total)

	var done atomic.Int64
	start := make(chan struct{})
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range perWorker {
				order := "o-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				_, err := g.Reserve(ctx, order, []stock.Line{{SKU: "hot", Qty: 1}}, time.Now().Add(time.Hour))
				if err != nil {
					errs <- err
				}
				done.Add(1)
			}
		})
	}
	// Flush again and again for as long as the workers run, on a client of
	// its own, counting the flushes that landed while reserves were under way.
	flusher := r.Client(0)
	t.Cleanup(func() { _ = flusher.Close() })
	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		mid := 0
		for {
			select {
			case <-stop:
				flushed <- mid
				return
			default:
			}
			n := done.Load()
			if err := flusher.ScriptFlush(ctx).Err(); err != nil {
				t.Errorf("SCRIPT FLUSH: %v", err)
			}
			if n > 0 && done.Load() < total {
				mid++
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stop)
	mid := <-flushed
	close(errs)
	for err := range errs {
		t.Errorf("Reserve during SCRIPT FLUSH = %v, want nil", err)
	}
	if mid == 0 || evals.Load() == 0 {
		t.Errorf("flushes mid-run, EVAL fallbacks = %d, %d, want both > 0", mid, evals.Load())
	}
	t.Logf("flushes mid-run: %d, EVAL fallbacks: %d", mid, evals.Load())
	wantLevels(t, g, stock.Levels{SKU: "hot", Available: 0, Held: total, Sold: 0, Stocked: true})
}

// evalCounter counts EVAL commands, which go-redis only sends after EVALSHA
// came back NOSCRIPT.
type evalCounter struct{ n *atomic.Int64 }

func (evalCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h evalCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "eval") {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (evalCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
