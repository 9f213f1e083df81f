package stock_test

import (
	"context"
	"fmt"
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
