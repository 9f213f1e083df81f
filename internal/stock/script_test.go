package stock_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/ratelimit"
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

// reserveArgs is reserve.lua's ARGV for a batch of orders, each given as
// order.
func reserveArgs(orders ...[]string) []any {
	args := []any{strconv.Itoa(len(orders))}
	for _, o := range orders {
		for _, a := range o {
			args = append(args, a)
		}
	}
	return args
}

// order is one order of reserveArgs: its header and one qty per line.
func order(id, tok, dl string, qty ...string) []string {
	return append([]string{id, tok, dl, strconv.Itoa(len(qty))}, qty...)
}

// commitArgs is commit.lua's ARGV for orders given as {id, token, S}.
func commitArgs(retention string, orders ...[3]string) []any {
	args := []any{retention, strconv.Itoa(len(orders))}
	for _, o := range orders {
		args = append(args, o[0], o[1], o[2])
	}
	return args
}

// scriptCase is one call made straight to a script, bypassing every check
// the Go API does.
type scriptCase struct {
	name string
	keys []string
	args []any
	// want is the reply (see render) when the call is not refused with
	// the script's bad-arguments code. The scripts check only what could
	// corrupt counters (internal/stock checks the rest), so some malformed
	// calls are answered as the ordinary call they amount to: no orders, a
	// line that is short, a hold that is not there.
	want string
	// raises is a call that Redis refuses before the script's first write:
	// a deadline ZADD will not take, or a key or order id that is missing
	// altogether.
	raises bool
}

// Fixed hold tokens of scriptFixture's holds, so that cases can name them.
const (
	tokHeld  = "t-held"
	tokHeld2 = "t-held2"
	tokDone  = "t-done"
)

// scriptFixture gives the scripts something to damage: stock on A and B,
// live holds of order "held" on A (2 units, token tokHeld) and of "held2"
// on B (3 units, tokHeld2), a committed tombstone of order "done" on B (1
// unit, tokDone) and a rate-limit count for customer c1. A has 8
// available, B 6.
func scriptFixture(t *testing.T, g *stock.Gate, rdb *redis.Client, deadline time.Time) {
	t.Helper()
	ctx := context.Background()
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 10)
	mustReserve(t, g, "held", []stock.Line{{SKU: "A", Qty: 2}}, deadline)
	setTok(t, rdb, "A", "held", tokHeld)
	mustReserve(t, g, "held2", []stock.Line{{SKU: "B", Qty: 3}}, deadline)
	setTok(t, rdb, "B", "held2", tokHeld2)
	mustReserve(t, g, "done", []stock.Line{{SKU: "B", Qty: 1}}, deadline)
	setTok(t, rdb, "B", "done", tokDone)
	if _, err := g.Commit(ctx, "done", tokDone, []string{"B"}); err != nil {
		t.Fatalf("Commit(done) = %v, want nil", err)
	}
	if err := rdb.Set(ctx, ratelimit.Key("c1"), "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// counters3 is the key layout of set, add and rebuild.
func counters3(sku string) []string {
	return []string{stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku)}
}

// render is a script's reply as text: integers as they are, strings
// quoted, separated by spaces; "(empty)" for a reply without values.
func render(v any) string {
	vals, ok := v.([]any)
	if !ok {
		return fmt.Sprintf("(not a list: %#v)", v)
	}
	if len(vals) == 0 {
		return "(empty)"
	}
	out := make([]string, len(vals))
	for i, x := range vals {
		switch x := x.(type) {
		case int64:
			out[i] = strconv.FormatInt(x, 10)
		case string:
			out[i] = strconv.Quote(x)
		default:
			out[i] = fmt.Sprintf("%#v", x)
		}
	}
	return strings.Join(out, " ")
}

// evalVia runs src with EVAL or with EVALSHA of its SHA (loaded first), and
// returns the reply rendered.
func evalVia(ctx context.Context, rdb *redis.Client, via, src string, keys []string, args []any) (string, error) {
	var res any
	var err error
	if via == "EVAL" {
		res, err = rdb.Eval(ctx, src, keys, args...).Result()
	} else {
		var sha string
		if sha, err = rdb.ScriptLoad(ctx, src).Result(); err != nil {
			return "", err
		}
		res, err = rdb.EvalSha(ctx, sha, keys, args...).Result()
	}
	if err != nil {
		return "", err
	}
	return render(res), nil
}

// TestScriptsRefuseBadArguments sends malformed and malicious KEYS and ARGV
// to every script with both EVAL and EVALSHA, and checks that each is
// refused (the script's bad-arguments code, or an error Redis raises before
// the first write) or answered as the harmless call it amounts to, and that
// not one key of the database changed. The fixture has stock, live holds
// and a tombstone, so a call that slipped through would have something to
// change. Calls of several orders are in TestScriptBatchArguments.
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
	newA, newAB := keys5("A", "new"), concat(keys5("A", "new"), keys5("B", "new"))

	badQty := map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3", "hex": "0x10",
		"non-numeric": "abc", "leading space": " 1", "trailing space": "1 ", "huge": "99999999999999999999",
		"empty": "", "plus sign": "+1",
	}
	// A count of orders, lines or SKUs that is not a decimal integer.
	badCount := map[string]string{
		"negative": "-1", "fractional": "1.5", "exponent": "1e0", "non-numeric": "x", "empty": "",
		"huge": "99999999999999999999",
	}

	var reserve []scriptCase
	for name, q := range badQty {
		reserve = append(reserve,
			scriptCase{name: "qty " + name, keys: newA, args: reserveArgs(order("new", "t", dl, q))},
			scriptCase{name: "second line qty " + name, keys: newAB, args: reserveArgs(order("new", "t", dl, "1", q))},
		)
	}
	for name, n := range badCount {
		reserve = append(reserve,
			// No orders: nothing to do.
			scriptCase{name: "order count " + name, keys: newA, args: append(strs(n), strs("new", "t", dl, "1", "1")...), want: "(empty)"},
			scriptCase{name: "line count " + name, keys: newA, args: strs("1", "new", "t", dl, n, "1")},
		)
	}
	reserve = append(reserve,
		// MaxQty is internal/stock's: past it a line is just short (A has 8, B 6).
		scriptCase{name: "qty over max", keys: newA, args: reserveArgs(order("new", "t", dl, "10001")), want: `0 1 8 ""`},
		scriptCase{name: "second line qty over max", keys: newAB, args: reserveArgs(order("new", "t", dl, "1", "10001")), want: `0 2 6 ""`},
		// The first write, ZADD, takes the deadline or raises.
		scriptCase{name: "deadline non-numeric", keys: newA, args: reserveArgs(order("new", "t", "soon", "1")), raises: true},
		scriptCase{name: "deadline empty", keys: newA, args: reserveArgs(order("new", "t", "", "1")), raises: true},
		scriptCase{name: "no arguments", keys: newA, want: "(empty)"},
		scriptCase{name: "order count zero", keys: newA, args: reserveArgs()[:1:1], want: "(empty)"},
		scriptCase{name: "missing order header", keys: newA, args: strs("1")},
		scriptCase{name: "header without line count", keys: newA, args: strs("1", "new", "t", dl)},
		scriptCase{name: "line count zero", keys: newA, args: strs("1", "new", "t", dl, "0", "1")},
		scriptCase{name: "empty order id", keys: keys5("A", ""), args: reserveArgs(order("", "t", dl, "1"))},
		scriptCase{name: "order id over 64 bytes", keys: keys5("A", strings.Repeat("o", 65)), args: reserveArgs(order(strings.Repeat("o", 65), "t", dl, "1"))},
		// Every order has at least one line, and its lines are whole
		// groups of five keys.
		scriptCase{name: "no keys", args: reserveArgs(order("new", "t", dl, "1"))},
		scriptCase{name: "four keys", keys: newA[:4], args: reserveArgs(order("new", "t", dl, "1"))},
		scriptCase{name: "line count past the keys", keys: newA, args: reserveArgs(order("new", "t", dl, "1", "1"))},
		scriptCase{name: "line count past the arguments", keys: newAB, args: strs("1", "new", "t", dl, "2", "1")},
		scriptCase{name: "duplicated sku", keys: concat(newA, newA), args: reserveArgs(order("new", "t", dl, "1", "1"))},
		scriptCase{name: "duplicated sku after another", keys: concat(newAB, newA), args: reserveArgs(order("new", "t", dl, "1", "1", "1"))},
		scriptCase{name: "hold key of another order", keys: keys5("A", "other"), args: reserveArgs(order("new", "t", dl, "1"))},
		scriptCase{name: "live hold key of another order", keys: keys5("A", "held"), args: reserveArgs(order("new", "t", dl, "1"))},
		scriptCase{name: "keys of two skus in one line", keys: mixedNew, args: reserveArgs(order("new", "t", dl, "1"))},
	)

	release := []scriptCase{
		{name: "missing order id", keys: keys5("A", "held")},
		// No order has an empty id (reserve refuses one), so no hold is there.
		{name: "empty order id", keys: keys5("A", ""), args: strs(""), want: "0 0"},
		{name: "no keys", args: strs("held")},
		{name: "four keys", keys: keys5("A", "held")[:4], args: strs("held")},
		{name: "duplicated sku", keys: concat(keys5("A", "held"), keys5("A", "held")), args: strs("held")},
		{name: "hold key of another order", keys: keys5("A", "held"), args: strs("someone-else")},
		{name: "keys of two skus in one line", keys: mixed, args: strs("held")},
	}

	held := [3]string{"held", tokHeld, "1"}
	var commit []scriptCase
	for name, r := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3",
		"non-numeric": "abc", "empty": "", "huge": "99999999999999999999",
	} {
		commit = append(commit, scriptCase{name: "retention " + name, keys: keys5("A", "held"), args: commitArgs(r, held)})
	}
	for name, n := range badCount {
		commit = append(commit,
			scriptCase{name: "order count " + name, keys: keys5("A", "held"), args: strs("1000", n, "held", tokHeld, "1")},
			scriptCase{name: "sku count " + name, keys: keys5("A", "held"), args: strs("1000", "1", "held", tokHeld, n)},
		)
	}
	commit = append(commit,
		scriptCase{name: "no arguments", keys: keys5("A", "held")},
		scriptCase{name: "missing order count", keys: keys5("A", "held"), args: strs("1000")},
		scriptCase{name: "order count zero", keys: keys5("A", "held"), args: commitArgs("1000"), want: "(empty)"},
		scriptCase{name: "missing order header", keys: keys5("A", "held"), args: strs("1000", "1")},
		scriptCase{name: "header without sku count", keys: keys5("A", "held"), args: strs("1000", "1", "held", tokHeld)},
		scriptCase{name: "sku count zero", keys: keys5("A", "held"), args: commitArgs("1000", [3]string{"held", tokHeld, "0"})},
		scriptCase{name: "empty order id", keys: keys5("A", ""), args: commitArgs("1000", [3]string{"", "t", "1"}), want: "0 0 1 0"},
		scriptCase{name: "no keys", args: commitArgs("1000", held)},
		scriptCase{name: "four keys", keys: keys5("A", "held")[:4], args: commitArgs("1000", held)},
		scriptCase{name: "sku count past the keys", keys: keys5("A", "held"), args: commitArgs("1000", [3]string{"held", tokHeld, "2"})},
		scriptCase{name: "duplicated sku", keys: concat(keys5("A", "held"), keys5("A", "held")), args: commitArgs("1000", [3]string{"held", tokHeld, "2"})},
		scriptCase{name: "hold key of another order", keys: keys5("A", "held"), args: commitArgs("1000", [3]string{"someone-else", tokHeld, "1"})},
		scriptCase{name: "hold key of another order under its token", keys: keys5("A", "held"), args: commitArgs("1000", [3]string{"someone-else", "other", "1"})},
		scriptCase{name: "keys of two skus in one line", keys: mixed, args: commitArgs("1000", held)},
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
			out = append(out, scriptCase{name: "qty zero", keys: counters3("A"), args: strs("0"), want: "8 2 0"})
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
			scriptCase{name: "limit " + name, keys: []string{ratelimit.Key("c1")}, args: strs(v, "1000")},
			scriptCase{name: "window " + name, keys: []string{ratelimit.Key("c1")}, args: strs("5", v)},
		)
	}
	rate = append(rate,
		scriptCase{name: "missing window", keys: []string{ratelimit.Key("c1")}, args: strs("5")},
		scriptCase{name: "no keys", args: strs("5", "1000"), raises: true},
	)

	// cancel.lua: order "done" sold 1 of B (a committed tombstone); "held"
	// holds 2 of A, never committed.
	var cancel []scriptCase
	for name, r := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3",
		"non-numeric": "abc", "empty": "", "huge": "99999999999999999999",
	} {
		cancel = append(cancel, scriptCase{name: "retention " + name, keys: keys5("B", "done"), args: strs(r, "done", tokDone, "1")})
	}
	for name, q := range badQty {
		cancel = append(cancel,
			scriptCase{name: "qty " + name, keys: keys5("B", "done"), args: strs("1000", "done", tokDone, q)},
			scriptCase{name: "second sku qty " + name, keys: concat(keys5("A", "done"), keys5("B", "done")), args: strs("1000", "done", tokDone, "1", q)},
		)
	}
	cancel = append(cancel,
		scriptCase{name: "no arguments", keys: keys5("B", "done")},
		scriptCase{name: "missing order id", keys: keys5("B", "done"), args: strs("1000")},
		scriptCase{name: "missing token", keys: keys5("B", "done"), args: strs("1000", "done")},
		scriptCase{name: "missing qty", keys: keys5("B", "done"), args: strs("1000", "done", tokDone)},
		scriptCase{name: "missing second qty", keys: concat(keys5("A", "done"), keys5("B", "done")), args: strs("1000", "done", tokDone, "1")},
		scriptCase{name: "no keys", args: strs("1000", "done", tokDone, "1")},
		scriptCase{name: "four keys", keys: keys5("B", "done")[:4], args: strs("1000", "done", tokDone, "1")},
		scriptCase{name: "duplicated sku", keys: concat(keys5("B", "done"), keys5("B", "done")), args: strs("1000", "done", tokDone, "1", "1")},
		scriptCase{name: "hold key of another order", keys: keys5("B", "done"), args: strs("1000", "someone-else", tokDone, "1")},
		scriptCase{name: "keys of two skus in one line", keys: mixed, args: strs("1000", "held", tokHeld, "2")},
		// More given back than was sold: B sold 1.
		scriptCase{name: "qty over sold", keys: keys5("B", "new"), args: strs("1000", "new", "t", "2"), want: "-4 1 1"},
		// held2's hold on B under another token: B sold 1, less than 3.
		scriptCase{name: "later delivery's hold over sold", keys: keys5("B", "held2"), args: strs("1000", "held2", "t-other", "3"), want: "-4 1 1"},
		scriptCase{name: "sku never stocked", keys: keys5("Z", "done"), args: strs("1000", "done", tokDone, "1"), want: "-1 1 0"},
	)

	// Each of an order's five keys in turn taken from another SKU: had
	// the call run, that SKU's counters, hold or deadlines would change
	// for units of this one.
	for i, what := range []string{"available", "held", "sold", "hold", "deadlines"} {
		swap := func(order string) []string {
			k := keys5("A", order)
			k[i] = keys5("B", order)[i]
			return k
		}
		name := what + " key of another sku"
		reserve = append(reserve, scriptCase{name: name, keys: swap("new"), args: reserveArgs(order("new", "t", dl, "1"))})
		release = append(release, scriptCase{name: name, keys: swap("held"), args: strs("held")})
		commit = append(commit, scriptCase{name: name, keys: swap("held"), args: commitArgs("1000", held)})
		cancel = append(cancel, scriptCase{name: name, keys: swap("held"), args: strs("1000", "held", tokHeld, "2")})
	}

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
		{"cancel", lua.Cancel, cancel},
	}

	before := snapshot(t, rdb)
	for _, s := range scripts {
		for _, c := range s.cases {
			for _, via := range []string{"EVAL", "EVALSHA"} {
				res, err := evalVia(ctx, rdb, via, s.src, c.keys, c.args)
				switch {
				case c.raises:
					if err == nil {
						t.Errorf("%s %s (%s) = %s, want an error", via, s.name, c.name, res)
					}
				case err != nil:
					t.Errorf("%s %s (%s) = error %v, want a reply", via, s.name, c.name, err)
				case c.want != "":
					if res != c.want {
						t.Errorf("%s %s (%s) = %s, want %s", via, s.name, c.name, res, c.want)
					}
				case !strings.HasPrefix(res, "-2 "):
					t.Errorf("%s %s (%s) = %s, want -2 ... (bad arguments)", via, s.name, c.name, res)
				}
				if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
					t.Fatalf("%s %s (%s) changed the database (-before +after):\n%s", via, s.name, c.name, diff)
				}
			}
		}
	}
}

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

// mustHSet sets field of hash key to val and fails the test on error.
func mustHSet(t *testing.T, rdb *redis.Client, key, field, val string) {
	t.Helper()
	if err := rdb.HSet(context.Background(), key, field, val).Err(); err != nil {
		t.Fatal(err)
	}
}

// mustSet sets key to val and fails the test on error.
func mustSet(t *testing.T, rdb *redis.Client, key, val string) {
	t.Helper()
	if err := rdb.Set(context.Background(), key, val, 0).Err(); err != nil {
		t.Fatal(err)
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

	// commitHeld commits order "held" under the token given.
	commitHeld := func(ctx context.Context, g *stock.Gate, token string) error {
		_, err := g.Commit(ctx, "held", token, []string{"A", "B"})
		return err
	}
	for _, tt := range []struct {
		name    string
		corrupt func(ctx context.Context, rdb redis.Cmdable) error
		// call gets the token of order "held"'s holds.
		call func(ctx context.Context, g *stock.Gate, token string) error
	}{
		{
			name: "reserve with fractional available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "5.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with exponent available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "1e3", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with non-numeric held on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.HeldKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: commitHeld,
		},
		{
			// Giving back a hold under another token reads available.
			name: "commit under another token with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Commit(ctx, "held", "other", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with held of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.HeldKey("B")).Err(); err != nil {
					return err
				}
				return rdb.LPush(ctx, stock.HeldKey("B"), "x").Err()
			},
			call: commitHeld,
		},
		{
			name: "release with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with fractional sold on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.SoldKey("B"), "0.5", 0).Err()
			},
			call: commitHeld,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			g, rdb := newGate(t, stock.Config{})
			stockSKU(t, g, "A", 10)
			stockSKU(t, g, "B", 10)
			lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}
			r := mustReserve(t, g, "held", lines, time.Now().Add(time.Hour))
			if err := tt.corrupt(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, rdb)

			err := tt.call(ctx, g, r.Token)
			if err == nil {
				t.Errorf("call = nil, want an error")
			}
			if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
				t.Errorf("call changed the database (-before +after):\n%s", diff)
			}
		})
	}
}

// TestScriptFlushMidRun flushes the script cache again and again while
// concurrent reserves run and are batched: each call must still succeed
// through the EVAL fallback, and the counters must add up. On a single node
// a batch is one script call (EVALSHA, then EVAL on NOSCRIPT); with the
// per-slot path over SKUs of several slots, a batch is a pipeline of
// EVALSHAs whose NOSCRIPT replies are sent again (TestScriptFlushPipelined
// covers that path deterministically). It runs on a redis-server of its
// own, because SCRIPT FLUSH is server-wide and would disturb the package's
// other tests.
func TestScriptFlushMidRun(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name    string
		cluster bool
		skus    []string
	}{
		{"SingleNode", false, []string{"hot"}},
		{"PerSlot", true, []string{"red", "blue", "green", "hot"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
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

			// Count EVAL fallbacks, to prove the flushes really forced some,
			// and the script calls and orders, to prove calls were batched.
			var evals atomic.Int64
			rdb.AddHook(evalCounter{&evals})
			log := &scriptLog{}
			rdb.AddHook(log)
			g := stock.New(rdb, stock.Config{Cluster: tt.cluster})
			for _, s := range tt.skus {
				stockSKU(t, g, s, total)
			}
			log.take()

			var done atomic.Int64
			start := make(chan struct{})
			errs := make(chan error, total)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					<-start
					sku := tt.skus[w%len(tt.skus)]
					for i := range perWorker {
						order := "o-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
						_, err := g.Reserve(ctx, order, []stock.Line{{SKU: sku, Qty: 1}}, time.Now().Add(time.Hour))
						if err != nil {
							errs <- err
						}
						done.Add(1)
					}
				})
			}
			// Flush again and again for as long as the workers run, on a
			// client of its own, counting the flushes that landed while
			// reserves were under way.
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
			calls := log.take()
			orders := 0
			for _, c := range calls {
				n, _ := strconv.Atoi(c.args[0])
				orders += n
			}
			if orders != total || len(calls) >= total {
				t.Errorf("script calls, orders in them = %d, %d, want fewer calls than orders and %d orders (each run once)", len(calls), orders, total)
			}
			if tt.cluster && log.noscript == 0 {
				t.Errorf("pipelined script calls that came back NOSCRIPT = 0, want some: the flushes missed the pipeline path")
			}
			t.Logf("flushes mid-run: %d, EVAL fallbacks: %d, script calls: %d, pipelined NOSCRIPT: %d", mid, evals.Load(), len(calls), log.noscript)
			held := int64(0)
			for _, s := range tt.skus {
				l := levels(t, g, s)
				held += l.Held
				if l.Total() != total || l.Sold != 0 {
					t.Errorf("Show(%s) = %+v, want a total of %d and nothing sold", s, l, total)
				}
			}
			if held != total {
				t.Errorf("units held = %d, want %d (one per Reserve)", held, total)
			}
		})
	}
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
