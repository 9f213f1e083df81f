package stock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// sameSlotSKU finds a SKU other than sku that hashes to sku's slot.
func sameSlotSKU(t *testing.T, sku string) string {
	t.Helper()
	want := stock.Slot(sku)
	for i := range 1_000_000 {
		s := sku + "-" + strconv.Itoa(i)
		if stock.Slot(s) == want {
			return s
		}
	}
	t.Fatalf("no SKU shares slot %d with %s", want, sku)
	return ""
}

func TestSlot(t *testing.T) {
	t.Parallel()

	// The check value of CRC-16/XMODEM, and the example in the Redis
	// Cluster specification.
	if got := stock.Slot("123456789"); got != 12739 {
		t.Errorf("Slot(123456789) = %d, want 12739", got)
	}

	// Everything else is asked of a real server. CLUSTER KEYSLOT answers
	// only with cluster support enabled ("ERR This instance has cluster
	// support disabled" otherwise), hence the cluster-mode node.
	ctx := context.Background()
	r := testsvc.NewClusterNode(t)
	c := r.Client(0)
	t.Cleanup(func() { _ = c.Close() })

	skus := []string{"a", "A", "SKU-1", "sku_2", "x.y.z", "0", "-", "_", ".", strings.Repeat("z", 64), "123456789"}
	for i := range 300 {
		skus = append(skus, fmt.Sprintf("sku-%d", i*7919))
	}
	for _, sku := range skus {
		for _, key := range []string{sku, stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku), stock.HoldKey(sku, "o-1:x"), stock.DeadlinesKey(sku)} {
			want, err := c.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
			}
			if got := stock.Slot(sku); int64(got) != want {
				t.Errorf("Slot(%q) = %d, want CLUSTER KEYSLOT %q = %d", sku, got, key, want)
			}
		}
	}
}

// TestClusterReserve runs multi-slot orders on a one-node Redis Cluster
// through a ClusterClient: every script call must stay within one slot or
// the server refuses it with CROSSSLOT.
func TestClusterReserve(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	r := testsvc.NewClusterNode(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	g := stock.New(cc, stock.Config{Retention: time.Hour})

	twin := sameSlotSKU(t, "red")
	for _, s := range []string{"red", "blue", "green", twin} {
		stockSKU(t, g, s, 10)
	}
	// Groups are taken in slot order: blue, green, then red with its twin.
	if !(stock.Slot("blue") < stock.Slot("green") && stock.Slot("green") < stock.Slot("red") && stock.Slot("red") < stock.Slot("ghost")) {
		t.Fatalf("slots of blue, green, red, ghost = %d, %d, %d, %d, want increasing: the test needs that order",
			stock.Slot("blue"), stock.Slot("green"), stock.Slot("red"), stock.Slot("ghost"))
	}
	deadline := time.Now().Add(time.Hour)

	lines := []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 2}, {SKU: twin, Qty: 3}, {SKU: "green", Qty: 4}}
	all := []string{"red", "blue", twin, "green"}
	first := mustReserve(t, g, "o1", lines, deadline)
	if first.Outcome != stock.Reserved || first.Token == "" || first.Partial {
		t.Fatalf("Reserve(o1) = %+v, want %v under a token", first, stock.Reserved)
	}
	for _, s := range all {
		if tok := readHold(t, cc, s, "o1").Tok; tok != first.Token {
			t.Errorf("tok of hold %s/o1 = %q, want the order's one token %q", s, tok, first.Token)
		}
	}
	if diff := cmp.Diff(stock.Reservation{Outcome: stock.AlreadyHeld, Token: first.Token}, mustReserve(t, g, "o1", lines, deadline)); diff != "" {
		t.Errorf("repeated Reserve(o1) mismatch (-want +got):\n%s", diff)
	}
	for _, l := range lines {
		wantLevels(t, g, stock.Levels{SKU: l.SKU, Available: 10 - l.Qty, Held: l.Qty, Stocked: true})
	}
	if res, err := g.Commit(ctx, "o1", first.Token, all); err != nil || res != (stock.CommitResult{Units: 10}) {
		t.Errorf("Commit(o1) = %+v, %v, want 10 units, nil", res, err)
	}
	if diff := cmp.Diff(stock.Reservation{Outcome: stock.AlreadyCommitted, Token: first.Token}, mustReserve(t, g, "o1", lines, deadline)); diff != "" {
		t.Errorf("Reserve(o1) after Commit mismatch (-want +got):\n%s", diff)
	}

	mustReserve(t, g, "o2", lines, deadline)
	if units, err := g.Release(ctx, "o2", all); err != nil || units != 10 {
		t.Errorf("Release(o2) = %d, %v, want 10, nil", units, err)
	}

	// A later slot group that refuses leaves the earlier groups' holds
	// under the token, for the order's row to decide; Release gives them
	// back. A first group that refuses holds nothing.
	for _, tt := range []struct {
		order   string
		lines   []stock.Line
		err     error
		partial []string // SKUs held after the refusal
	}{
		{"o3", []stock.Line{{SKU: "red", Qty: 1}, {SKU: twin, Qty: 1}, {SKU: "blue", Qty: 1}, {SKU: "green", Qty: 7}},
			&stock.OutOfStockError{SKU: "green", Available: 6}, []string{"blue"}},
		{"o4", []stock.Line{{SKU: "blue", Qty: 1}, {SKU: "ghost", Qty: 1}}, &stock.NotStockedError{SKU: "ghost"}, []string{"blue"}},
		{"o5", []stock.Line{{SKU: "red", Qty: 1}, {SKU: "green", Qty: 7}}, &stock.OutOfStockError{SKU: "green", Available: 6}, nil},
	} {
		res, err := g.Reserve(ctx, tt.order, tt.lines, deadline)
		if diff := cmp.Diff(tt.err, err); diff != "" {
			t.Errorf("Reserve(%s) error mismatch (-want +got):\n%s", tt.order, diff)
		}
		if res.Partial != (tt.partial != nil) || res.Token == "" {
			t.Errorf("Reserve(%s) = %+v, want Partial %v and a token", tt.order, res, tt.partial != nil)
		}
		var skus []string
		for _, l := range tt.lines {
			skus = append(skus, l.SKU)
			h := readHold(t, cc, l.SKU, tt.order)
			if want := slices.Contains(tt.partial, l.SKU); want != (h.State == "held") || (want && h.Tok != res.Token) {
				t.Errorf("hold %s/%s after the refusal = %+v, want held under %q: %v", l.SKU, tt.order, h, res.Token, want)
			}
		}
		if units, err := g.Release(ctx, tt.order, skus); err != nil || units != int64(len(tt.partial)) {
			t.Errorf("Release(%s) = %d, %v, want %d, nil", tt.order, units, err, len(tt.partial))
		}
	}
	for _, l := range lines {
		wantLevels(t, g, stock.Levels{SKU: l.SKU, Available: 10 - l.Qty, Sold: l.Qty, Stocked: true})
	}
	if n, err := g.OpenHolds(ctx); err != nil || n != 0 {
		t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
	}
	if n := cc.Exists(ctx, stock.HoldKey("red", "o3"), stock.HoldKey("green", "o3"), stock.AvailKey("ghost")).Val(); n != 0 {
		t.Errorf("EXISTS holds of o3 past the short group and ghost's stock = %d, want 0", n)
	}
}

// scriptLog records every script call that ran, sent alone or in a
// pipeline, to check how orders were split into calls.
type scriptLog struct {
	mu    sync.Mutex
	calls []scriptCall
	// noscript counts the pipelined script calls that came back NOSCRIPT
	// (each is then sent again on its own).
	noscript int
	// after, when set, runs after each script call sent alone returns, and
	// after each pipeline with a script call in it (a reserve goes with its
	// index marks).
	after func()
}

// scriptCall is one EVALSHA or EVAL: its keys and its arguments.
type scriptCall struct {
	keys []string
	args []string
}

// scriptCallOf is cmd as a scriptCall, false when cmd is no script call.
func scriptCallOf(cmd redis.Cmder) (scriptCall, bool) {
	name := strings.ToLower(cmd.Name())
	if name != "evalsha" && name != "eval" {
		return scriptCall{}, false
	}
	args := cmd.Args()
	n, _ := strconv.Atoi(fmt.Sprint(args[2]))
	var c scriptCall
	for i, a := range args[3:] {
		if i < n {
			c.keys = append(c.keys, fmt.Sprint(a))
		} else {
			c.args = append(c.args, fmt.Sprint(a))
		}
	}
	return c, true
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func (*scriptLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *scriptLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c, ok := scriptCallOf(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if isNoScript(err) {
			return err // the EVAL fallback that follows is the call that counts
		}
		l.mu.Lock()
		l.calls = append(l.calls, c)
		after := l.after
		l.mu.Unlock()
		if after != nil {
			after()
		}
		return err
	}
}

func (l *scriptLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		l.mu.Lock()
		logged := false
		for _, cmd := range cmds {
			c, ok := scriptCallOf(cmd)
			switch {
			case !ok:
			case isNoScript(cmd.Err()):
				l.noscript++
			default:
				l.calls = append(l.calls, c)
				logged = true
			}
		}
		after := l.after
		l.mu.Unlock()
		if logged && after != nil {
			after()
		}
		return err
	}
}

// take returns the calls logged so far and forgets them.
func (l *scriptLog) take() []scriptCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

// keySlot is the cluster slot of a stock key, from its {SKU} tag.
func keySlot(key string) int {
	i, j := strings.Index(key, "{"), strings.Index(key, "}")
	return stock.Slot(key[i+1 : j])
}

// TestClusterGroupingOnOneNode forces the per-slot path on a plain client
// and checks the calls it makes: one reserve per slot group, in slot order,
// each within one slot, all under the first group's token; and when a
// later group refuses, no compensating call: the earlier groups' holds
// stay for the order's row to decide.
func TestClusterGroupingOnOneNode(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	type testBundle struct {
		gate *stock.Gate
		rdb  *redis.Client
		log  *scriptLog
		twin string
	}

	// setup stocks blue, red and red's slot twin with 5 each. Blue's slot
	// comes first.
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		_, rdb := newGate(t, stock.Config{})
		log := &scriptLog{}
		rdb.AddHook(log)
		g := stock.New(rdb, stock.Config{Cluster: true, Retention: time.Hour})
		twin := sameSlotSKU(t, "red")
		for _, s := range []string{"red", twin, "blue"} {
			stockSKU(t, g, s, 5)
		}
		if stock.Slot("blue") >= stock.Slot("red") {
			t.Fatal("Slot(blue) >= Slot(red): the test needs blue's slot first")
		}
		log.take()
		return &testBundle{gate: g, rdb: rdb, log: log, twin: twin}
	}

	// slotsOf checks that each call stays in one slot and returns the slots.
	slotsOf := func(t *testing.T, calls []scriptCall) []int {
		t.Helper()
		var out []int
		for _, c := range calls {
			s := keySlot(c.keys[0])
			for _, k := range c.keys {
				if keySlot(k) != s {
					t.Errorf("script call with keys %v spans slots %d and %d", c.keys, s, keySlot(k))
				}
			}
			out = append(out, s)
		}
		return out
	}

	// wantHeld checks order's holds on skus: held under tok, or none.
	wantHeld := func(t *testing.T, b *testBundle, order, tok string, held []string, none ...string) {
		t.Helper()
		for _, s := range held {
			if h := readHold(t, b.rdb, s, order); h.State != "held" || h.Tok != tok {
				t.Errorf("hold %s/%s = %+v, want held under %q", s, order, h, tok)
			}
		}
		for _, s := range none {
			if h := readHold(t, b.rdb, s, order); h != (holdState{}) {
				t.Errorf("hold %s/%s = %+v, want none", s, order, h)
			}
		}
	}

	t.Run("OneCallPerSlotGroupInSlotOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		lines := []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 1}, {SKU: b.twin, Qty: 1}}
		got := mustReserve(t, b.gate, "o1", lines, time.Now().Add(time.Hour))
		if got.Outcome != stock.Reserved || got.Partial {
			t.Fatalf("Reserve(o1) = %+v, want %v", got, stock.Reserved)
		}
		calls := b.log.take()
		want := []int{stock.Slot("blue"), stock.Slot("red")}
		if diff := cmp.Diff(want, slotsOf(t, calls)); diff != "" {
			t.Errorf("slots of the reserve calls mismatch (-want +got):\n%s", diff)
		}
		if len(calls) == 2 && len(calls[1].keys) != 10 {
			t.Errorf("keys in the second call = %d, want 10 (red and its slot twin)", len(calls[1].keys))
		}
		wantHeld(t, b, "o1", got.Token, []string{"red", "blue", b.twin})
	})

	t.Run("LaterGroupRefusalLeavesPartialHolds", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		lines := []stock.Line{{SKU: "red", Qty: 6}, {SKU: b.twin, Qty: 1}, {SKU: "blue", Qty: 2}}
		res, err := b.gate.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour))
		if diff := cmp.Diff(error(&stock.OutOfStockError{SKU: "red", Available: 5}), err); diff != "" {
			t.Errorf("Reserve(o1) error mismatch (-want +got):\n%s", diff)
		}
		if !res.Partial || res.Token == "" {
			t.Errorf("Reserve(o1) = %+v, want Partial under a token", res)
		}
		// Reserve blue's group, then red's (short); nothing else.
		want := []int{stock.Slot("blue"), stock.Slot("red")}
		if diff := cmp.Diff(want, slotsOf(t, b.log.take())); diff != "" {
			t.Errorf("slots of the script calls mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "blue", Available: 3, Held: 2, Stocked: true})
		wantHeld(t, b, "o1", res.Token, []string{"blue"}, "red", b.twin)

		// The row is rejected: its holds follow it.
		if units, err := b.gate.Release(ctx, "o1", []string{"red", b.twin, "blue"}); err != nil || units != 2 {
			t.Errorf("Release(o1) = %d, %v, want 2, nil", units, err)
		}
		for _, s := range []string{"red", b.twin, "blue"} {
			wantLevels(t, b.gate, stock.Levels{SKU: s, Available: 5, Stocked: true})
		}
		if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
			t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
		}
	})

	t.Run("RedeliveryAfterPartialCarriesOnUnderTheFirstToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		lines := []stock.Line{{SKU: "red", Qty: 6}, {SKU: "blue", Qty: 2}}
		first, err := b.gate.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour))
		if !errors.Is(err, stock.ErrOutOfStock) || !first.Partial {
			t.Fatalf("Reserve(o1) = %+v, %v, want Partial and out of stock", first, err)
		}
		if _, err := b.gate.Add(ctx, "red", 5); err != nil {
			t.Fatal(err)
		}
		got := mustReserve(t, b.gate, "o1", lines, time.Now().Add(time.Hour))
		if diff := cmp.Diff(stock.Reservation{Outcome: stock.Reserved, Token: first.Token}, got); diff != "" {
			t.Errorf("redelivered Reserve(o1) mismatch (-want +got):\n%s", diff)
		}
		wantHeld(t, b, "o1", first.Token, []string{"red", "blue"})
		if res, err := b.gate.Commit(ctx, "o1", got.Token, []string{"red", "blue"}); err != nil || res != (stock.CommitResult{Units: 8}) {
			t.Errorf("Commit(o1) = %+v, %v, want 8 units", res, err)
		}
	})

	t.Run("LaterGroupUnderAnotherTokenIsAConflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		old := mustReserve(t, b.gate, "o1", []stock.Line{{SKU: "red", Qty: 1}}, time.Now().Add(time.Hour))
		res, err := b.gate.Reserve(ctx, "o1", []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 1}}, time.Now().Add(time.Hour))
		if !errors.Is(err, stock.ErrConflict) || !res.Partial || res.Token == old.Token {
			t.Fatalf("Reserve(o1) over red held under another token = %+v, %v, want Partial, a new token and ErrConflict", res, err)
		}
		wantHeld(t, b, "o1", res.Token, []string{"blue"})
		wantHeld(t, b, "o1", old.Token, []string{"red"})
		// Each hold follows its own token.
		if got, err := b.gate.Commit(ctx, "o1", old.Token, []string{"red", "blue"}); err != nil || got != (stock.CommitResult{Units: 1, Released: 1}) {
			t.Errorf("Commit(o1, the old token) = %+v, %v, want 1 unit sold and 1 released", got, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "blue", Available: 5, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "red", Available: 4, Sold: 1, Stocked: true})
	})

	t.Run("NewHoldAfterACommittedFirstGroupIsNotSold", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		// o1 is sold under T. Redis then loses red's tombstone (a failover,
		// say) and a late delivery of o1 reserves again: blue's tombstone
		// stands, red's units are free. The new red hold is not one the
		// confirmed row relied on, so committing the row's T must give it
		// back rather than sell red a second time.
		lines := []stock.Line{{SKU: "blue", Qty: 1}, {SKU: "red", Qty: 1}}
		first := mustReserve(t, b.gate, "o1", lines, time.Now().Add(time.Hour))
		if _, err := b.gate.Commit(ctx, "o1", first.Token, []string{"blue", "red"}); err != nil {
			t.Fatal(err)
		}
		if err := b.rdb.Del(ctx, stock.HoldKey("red", "o1")).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := b.gate.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour))
		if !errors.Is(err, stock.ErrConflict) || !res.Partial {
			t.Errorf("late Reserve(o1) = %+v, %v, want Partial and ErrConflict", res, err)
		}
		if got, err := b.gate.Commit(ctx, "o1", first.Token, []string{"blue", "red"}); err != nil || got != (stock.CommitResult{Released: 1}) {
			t.Errorf("Commit(o1, T) after the late Reserve = %+v, %v, want 1 unit released, none sold", got, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "red", Available: 4, Sold: 1, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "blue", Available: 4, Sold: 1, Stocked: true})
	})

	t.Run("CancelledCallerLeavesEarlierGroupsUnderTheToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The caller gives up right after the first group was reserved.
		b.log.after = cancel

		lines := []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 2}}
		res, err := b.gate.Reserve(cctx, "o1", lines, time.Now().Add(time.Hour))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Reserve(o1) = %+v, %v, want context.Canceled", res, err)
		}
		// The group the caller gave up on is never sent. The one that ran
		// holds under the token Reserve returned (Partial, or, when the
		// caller's end won the race with that group's result, a plain
		// error: either way the row must decide).
		if n := len(b.log.take()); n != 1 {
			t.Errorf("script calls = %d, want 1 (blue's group)", n)
		}
		wantHeld(t, b, "o1", res.Token, []string{"blue"}, "red")
		if units, err := b.gate.Release(ctx, "o1", []string{"red", "blue"}); err != nil || units != 2 {
			t.Errorf("Release(o1) = %d, %v, want 2, nil", units, err)
		}
		if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
			t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
		}
	})
}

// TestShowEveryMaster: on a 3-master cluster, Show with no SKUs finds
// every SKU on whichever master its slot lives, even when the set of SKUs
// (one key, on one master) lost its members, as a failover of that master
// can make it.
func TestShowEveryMaster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testsvc.StartCluster(t, 3, 0)
	cc := cl.Client()
	t.Cleanup(func() { _ = cc.Close() })
	g := stock.New(cc, stock.Config{})
	var skus []string
	masters := map[string]bool{}
	for i := range 12 {
		s := fmt.Sprintf("EM-%d", i)
		stockSKU(t, g, s, int64(i+1))
		skus = append(skus, s)
		masters[cl.SlotOwner(t, stock.Slot(s))] = true
	}
	if len(masters) != 3 {
		t.Fatalf("the SKUs live on %d masters, want all 3: pick other SKUs", len(masters))
	}
	// A hold key whose order id ends in ":avail" must not read as a SKU.
	if err := cc.HSet(ctx, stock.HoldKey("EM-0", "o:avail"), "qty", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cc.Del(ctx, stock.SKUsKey).Err(); err != nil {
		t.Fatal(err)
	}
	ls, err := g.Show(ctx)
	if err != nil {
		t.Fatalf("Show() = %v", err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.SKU)
	}
	slices.Sort(skus)
	if diff := cmp.Diff(skus, got); diff != "" {
		t.Errorf("Show() SKUs mismatch (-want +got):\n%s", diff)
	}
}
