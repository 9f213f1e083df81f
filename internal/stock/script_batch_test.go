package stock_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/lua"
)

// twinCall is one script call of a twinCase.
type twinCall struct {
	src  string
	keys []string
	args []any
}

// twinCase is a malformed call that the scripts answer instead of refusing,
// because it cannot corrupt counters, or one that does part of its work.
// Each must have exactly the effect of its twins, the well-formed calls
// with the same effect (none: the call changes nothing).
type twinCase struct {
	name string
	call twinCall
	// prep, when set, runs after the fixture, before the twins and the call.
	prep func(t *testing.T, rdb *redis.Client)
	// edited names the SKUs whose holds prep edited by hand: their held
	// counter no longer adds up, call or no call.
	edited []string
	twins  []twinCall
	// want is the call's reply (see render); raises, an error instead.
	want   string
	raises bool
	// check, when set, says what else the call did.
	check func(t *testing.T)
}

// runTwinCases runs each case with EVAL and with EVALSHA on a fresh
// scriptFixture, and checks its reply, that the database is then exactly
// what the twins leave, and that every SKU's held counter is still the sum
// of its held holds, each with a deadline entry.
func runTwinCases(t *testing.T, g *stock.Gate, rdb *redis.Client, deadline time.Time, cases []twinCase) {
	t.Helper()
	ctx := context.Background()
	for _, tt := range cases {
		for _, via := range []string{"EVAL", "EVALSHA"} {
			reset := func() {
				if err := rdb.FlushDB(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				scriptFixture(t, g, rdb, deadline)
				if tt.prep != nil {
					tt.prep(t, rdb)
				}
			}
			reset()
			for _, c := range tt.twins {
				if res, err := evalVia(ctx, rdb, via, c.src, c.keys, c.args); err != nil || strings.HasPrefix(res, "-2 ") {
					t.Fatalf("%s twin of %s = %s, %v, want a reply that is not -2", via, tt.name, res, err)
				}
			}
			twin := snapshot(t, rdb)
			reset()
			res, err := evalVia(ctx, rdb, via, tt.call.src, tt.call.keys, tt.call.args)
			switch {
			case tt.raises:
				if err == nil {
					t.Errorf("%s %s = %s, want an error", via, tt.name, res)
				}
			case err != nil || res != tt.want:
				t.Errorf("%s %s = %s, %v, want %s, nil", via, tt.name, res, err, tt.want)
			}
			if diff := cmp.Diff(twin, snapshot(t, rdb)); diff != "" {
				t.Errorf("%s %s differs from its twins (-twins +call):\n%s", via, tt.name, diff)
			}
			if tt.check != nil {
				tt.check(t)
			}
			for _, sku := range []string{"A", "B"} {
				if !slices.Contains(tt.edited, sku) {
					holdsAddUp(t, rdb, sku)
				}
			}
		}
	}
}

// TestScriptsIgnoreHarmlessArguments covers the malformed calls the scripts
// do not refuse, because they cannot corrupt counters. Extra KEYS and ARGV
// past the last order are ignored (for release, the extra argument is a
// quantity from the caller), so each such call must have exactly the
// effect of its twin, the well-formed call without them. A deadline before
// 1970 makes an ordinary hold that is already expired.
func TestScriptsIgnoreHarmlessArguments(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	deadline := time.Now().Add(time.Hour)
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)

	var cases []twinCase
	for _, w := range []struct {
		name string
		twinCall
		want string
	}{
		{"reserve", twinCall{lua.Reserve, keys5("A", "new"), reserveArgs(order("new", "t", dl, "1"))}, `1 0 0 "t"`},
		{"release", twinCall{lua.Release, keys5("A", "held"), strs("held")}, "2 1"},
		{"commit", twinCall{lua.Commit, keys5("A", "held"), commitArgs("1000", [3]string{"held", tokHeld, "1"})}, "2 1 0 0"},
		{"set", twinCall{lua.Set, counters3("A"), strs("1")}, "1 2 0"},
		{"add", twinCall{lua.Add, counters3("A"), strs("1")}, "9 2 0"},
		{"rebuild", twinCall{lua.Rebuild, counters3("C"), strs("10", "0")}, "10 0 0"},
		{"ratelimit", twinCall{lua.RateLimit, []string{ratelimit.Key("c1")}, strs("5", "1000")}, "1 2"},
	} {
		cases = append(cases,
			twinCase{name: w.name + " with an extra key", want: w.want, twins: []twinCall{w.twinCall},
				call: twinCall{w.src, append(slices.Clone(w.keys), "sg:{A}:extra"), w.args}},
			twinCase{name: w.name + " with an extra argument", want: w.want, twins: []twinCall{w.twinCall},
				call: twinCall{w.src, w.keys, append(slices.Clone(w.args), "5")}},
		)
	}
	cases = append(cases,
		twinCase{
			name:  "reserve with the keys of an extra line",
			call:  twinCall{lua.Reserve, concat(keys5("A", "new"), keys5("B", "new")), reserveArgs(order("new", "t", dl, "1"))},
			twins: []twinCall{{lua.Reserve, keys5("A", "new"), reserveArgs(order("new", "t", dl, "1"))}},
			want:  `1 0 0 "t"`,
		},
		// A hold whose qty reserve could not have written (a hand edit) is
		// logged and left alone: neither sold nor given back.
		twinCase{
			name:   "commit of a hold with a fractional qty",
			prep:   func(t *testing.T, rdb *redis.Client) { mustHSet(t, rdb, stock.HoldKey("A", "held"), "qty", "1.5") },
			edited: []string{"A"},
			call:   twinCall{lua.Commit, keys5("A", "held"), commitArgs("1000", [3]string{"held", tokHeld, "1"})},
			want:   "0 0 0 0",
		},
		twinCase{
			name:   "commit under another token of a hold with a negative qty",
			prep:   func(t *testing.T, rdb *redis.Client) { mustHSet(t, rdb, stock.HoldKey("A", "held"), "qty", "-2") },
			edited: []string{"A"},
			call:   twinCall{lua.Commit, keys5("A", "held"), commitArgs("1000", [3]string{"held", "other", "1"})},
			want:   "0 0 0 0",
		},
		twinCase{
			name:   "release of a hold with a non-numeric qty",
			prep:   func(t *testing.T, rdb *redis.Client) { mustHSet(t, rdb, stock.HoldKey("A", "held"), "qty", "x") },
			edited: []string{"A"},
			call:   twinCall{lua.Release, keys5("A", "held"), strs("held")},
			want:   "0 0",
		},
		twinCase{
			name: "reserve with a deadline before 1970",
			call: twinCall{lua.Reserve, keys5("A", "new"), reserveArgs(order("new", "t", "-1", "1"))},
			want: `1 0 0 "t"`,
			// Its twin is itself: check says what it did.
			twins: []twinCall{{lua.Reserve, keys5("A", "new"), reserveArgs(order("new", "t", "-1", "1"))}},
			check: func(t *testing.T) {
				wantLevels(t, g, stock.Levels{SKU: "A", Available: 7, Held: 3, Stocked: true})
				holds, err := g.ExpiredHolds(ctx, time.Now(), 10)
				want := []stock.Hold{{SKU: "A", OrderID: "new", Deadline: time.UnixMilli(-1)}}
				if err != nil || !cmp.Equal(holds, want) {
					t.Errorf("ExpiredHolds = %v, %v, want %v, nil (the sweeper releases it)", holds, err, want)
				}
			},
		},
	)
	runTwinCases(t, g, rdb, deadline, cases)
}

// TestScriptBatchArguments sends reserve and commit calls of several orders
// whose batch-level arguments (the order count, each order's line or SKU
// count, which places every later order's arguments and keys) are wrong.
// Orders are taken one at a time, so a call may do part of its work: each
// must have exactly the effect of its twins, well-formed calls of the
// orders it could read rightly, and never touch another order's hold or a
// counter those twins leave alone.
func TestScriptBatchArguments(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	deadline := time.Now().Add(time.Hour)
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)

	// New orders n1 on A, n2 and n3 on B, one unit each.
	n1, n2, n3 := order("n1", "t1", dl, "1"), order("n2", "t2", dl, "1"), order("n3", "t3", dl, "1")
	k1, k2, k3 := keys5("A", "n1"), keys5("B", "n2"), keys5("B", "n3")
	reserve := func(keys []string, orders ...[]string) twinCall {
		return twinCall{lua.Reserve, keys, reserveArgs(orders...)}
	}
	rcall := func(keys []string, args ...string) twinCall { return twinCall{lua.Reserve, keys, strs(args...)} }
	// A third SKU, C, whose counter a hand edit corrupted.
	corruptC := func(key, val string) func(t *testing.T, rdb *redis.Client) {
		return func(t *testing.T, rdb *redis.Client) {
			t.Helper()
			stockSKU(t, g, "C", 10)
			if err := rdb.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.Set(ctx, key, val, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []twinCase{
		{
			name:  "reserve: order count below the orders given",
			call:  twinCall{lua.Reserve, concat(k1, k2), append(strs("1"), reserveArgs(n1, n2)[1:]...)},
			twins: []twinCall{reserve(k1, n1)},
			want:  `1 0 0 "t1"`,
		},
		{
			name:  "reserve: order count above the orders given",
			call:  twinCall{lua.Reserve, concat(k1, k2), append(strs("3"), reserveArgs(n1, n2)[1:]...)},
			twins: []twinCall{reserve(concat(k1, k2), n1, n2)},
			want:  `1 0 0 "t1" 1 0 0 "t2" -2 0 0 ""`,
		},
		{
			name: "reserve: order count zero",
			call: twinCall{lua.Reserve, concat(k1, k2), append(strs("0"), reserveArgs(n1, n2)[1:]...)},
			want: "(empty)",
		},
		{
			// n1's second line would be n2's keys, with n2's hold key.
			name: "reserve: line count past the order's lines",
			call: rcall(concat(k1, k2), "2", "n1", "t1", dl, "2", "1", "n2", "t2", dl, "1", "1"),
			want: `-2 2 0 "" -2 1 0 ""`,
		},
		{
			// n1 reserves its first line; the rest is read from the wrong
			// places and refused.
			name:  "reserve: line count short of the order's lines",
			call:  rcall(concat(keys5("A", "n1"), keys5("B", "n1"), k2), "2", "n1", "t1", dl, "1", "1", "1", "n2", "t2", dl, "1", "1"),
			twins: []twinCall{reserve(k1, n1)},
			want:  `1 0 0 "t1" -2 1 0 ""`,
		},
		{
			name:  "reserve: line count zero in a later order ends the call",
			call:  rcall(concat(k1, k2, k3), "3", "n1", "t1", dl, "1", "1", "n2", "t2", dl, "0", "n3", "t3", dl, "1", "1"),
			twins: []twinCall{reserve(k1, n1)},
			want:  `1 0 0 "t1" -2 0 0 ""`,
		},
		{
			name: "reserve: orders' keys swapped",
			call: reserve(concat(k2, k1), n1, n2),
			want: `-2 1 0 "" -2 1 0 ""`,
		},
		{
			name:  "reserve: keys missing for the last order",
			call:  reserve(k1, n1, n2),
			twins: []twinCall{reserve(k1, n1)},
			want:  `1 0 0 "t1" -2 1 0 ""`,
		},
		{
			name:  "reserve: a later order given another order's live hold key",
			call:  reserve(concat(k1, keys5("B", "held2")), n1, n2),
			twins: []twinCall{reserve(k1, n1)},
			want:  `1 0 0 "t1" -2 1 0 ""`,
		},
		{
			name:  "reserve: a bad order between good ones",
			call:  reserve(concat(k1, k2, k3), n1, order("n2", "t2", dl, "-1"), n3),
			twins: []twinCall{reserve(concat(k1, k3), n1, n3)},
			want:  `1 0 0 "t1" -2 1 0 "" 1 0 0 "t3"`,
		},
		{
			name:  "reserve: a corrupt counter in one order",
			prep:  corruptC(stock.HeldKey("C"), "1.5"),
			call:  reserve(concat(k1, keys5("C", "nc"), k3), n1, order("nc", "tc", dl, "1"), n3),
			twins: []twinCall{reserve(concat(k1, k3), n1, n3)},
			want:  `1 0 0 "t1" -2 1 0 "" 1 0 0 "t3"`,
		},
		{
			// Its first write raises: the orders before it are whole, it
			// and the orders after it did nothing.
			name:   "reserve: a deadlines key of the wrong type in a later order",
			prep:   corruptC(stock.DeadlinesKey("C"), "x"),
			call:   reserve(concat(k1, keys5("C", "nc"), k3), n1, order("nc", "tc", dl, "1"), n3),
			twins:  []twinCall{reserve(k1, n1)},
			raises: true,
		},
	}

	c1, c2 := [3]string{"held", tokHeld, "1"}, [3]string{"held2", tokHeld2, "1"}
	h1, h2 := keys5("A", "held"), keys5("B", "held2")
	commit := func(keys []string, orders ...[3]string) twinCall {
		return twinCall{lua.Commit, keys, commitArgs("1000", orders...)}
	}
	ccall := func(keys []string, args ...string) twinCall { return twinCall{lua.Commit, keys, strs(args...)} }
	cases = append(cases,
		twinCase{
			name:  "commit: order count below the orders given",
			call:  ccall(concat(h1, h2), "1000", "1", "held", tokHeld, "1", "held2", tokHeld2, "1"),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0",
		},
		twinCase{
			name:  "commit: order count above the orders given",
			call:  ccall(concat(h1, h2), "1000", "3", "held", tokHeld, "1", "held2", tokHeld2, "1"),
			twins: []twinCall{commit(concat(h1, h2), c1, c2)},
			want:  "2 1 0 0 3 1 0 0 -2 0 0 0",
		},
		twinCase{
			name: "commit: order count zero",
			call: ccall(concat(h1, h2), "1000", "0", "held", tokHeld, "1"),
			want: "(empty)",
		},
		twinCase{
			name: "commit: sku count past the order's skus",
			call: ccall(concat(h1, h2), "1000", "2", "held", tokHeld, "2", "held2", tokHeld2, "1"),
			want: "-2 0 0 0 -2 0 0 0",
		},
		twinCase{
			name:  "commit: sku count short of the order's skus",
			call:  ccall(concat(h1, keys5("B", "held"), h2), "1000", "2", "held", tokHeld, "1", "held2", tokHeld2, "1"),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0 -2 0 0 0",
		},
		twinCase{
			name: "commit: orders' keys swapped",
			call: commit(concat(h2, h1), c1, c2),
			want: "-2 0 0 0 -2 0 0 0",
		},
		twinCase{
			name:  "commit: keys missing for the last order",
			call:  commit(h1, c1, c2),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0 -2 0 0 0",
		},
		twinCase{
			name:  "commit: a later order given another order's live hold key",
			call:  commit(concat(h1, h2), c1, [3]string{"x", tokHeld2, "1"}),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0 -2 0 0 0",
		},
		twinCase{
			// Not a bad argument: the row relied on another hold, and the
			// commit is then exactly a release of this one.
			name:  "commit: an order under another token",
			call:  commit(concat(h1, h2), c1, [3]string{"held2", "other", "1"}),
			twins: []twinCall{commit(h1, c1), {lua.Release, h2, strs("held2")}},
			want:  "2 1 0 0 0 0 0 3",
		},
		twinCase{
			name:  "commit: a corrupt sold counter in a later order",
			prep:  func(t *testing.T, rdb *redis.Client) { mustSet(t, rdb, stock.SoldKey("B"), "0.5") },
			call:  commit(concat(h1, h2), c1, c2),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0 -2 0 0 0",
		},
		twinCase{
			// Giving back reads available, which selling does not.
			name:  "commit: a corrupt available counter in a later order under another token",
			prep:  func(t *testing.T, rdb *redis.Client) { mustSet(t, rdb, stock.AvailKey("B"), "x") },
			call:  commit(concat(h1, h2), c1, [3]string{"held2", "other", "1"}),
			twins: []twinCall{commit(h1, c1)},
			want:  "2 1 0 0 -2 0 0 0",
		},
	)
	runTwinCases(t, g, rdb, deadline, cases)
}
