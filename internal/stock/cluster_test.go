package stock_test

import (
	"context"
	"errors"
	"fmt"
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

// newClusterNode starts a private redis-server in cluster mode that owns
// every slot: a one-node Redis Cluster. It refuses a script whose keys
// span two slots (CROSSSLOT), just as a real cluster would.
func newClusterNode(t *testing.T) *testsvc.Redis {
	t.Helper()
	ctx := context.Background()
	// The cluster bus needs a second port (port+10000 by default, which may
	// be taken or out of range), so pick one, and retry a lost port race.
	var r *testsvc.Redis
	var err error
	for range 3 {
		var bus int
		if bus, err = testsvc.FreePort(); err != nil {
			continue
		}
		r, err = testsvc.StartRedis(t.TempDir(), "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "1000")
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("StartRedis in cluster mode: %v", err)
	}
	t.Cleanup(r.Stop)
	c := r.Client(0)
	defer c.Close()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	testsvc.Poll(t, 10*time.Second, "cluster_state:ok", func() bool {
		return strings.Contains(c.ClusterInfo(ctx).Val(), "cluster_state:ok")
	})
	return r
}

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
	r := newClusterNode(t)
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
	r := newClusterNode(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	g := stock.New(cc, stock.Config{Retention: time.Hour})

	twin := sameSlotSKU(t, "red")
	slots := map[int]string{}
	for _, s := range []string{"red", "blue", "green"} {
		if other, ok := slots[stock.Slot(s)]; ok {
			t.Fatalf("Slot(%s) = Slot(%s): the test needs different slots", s, other)
		}
		slots[stock.Slot(s)] = s
		stockSKU(t, g, s, 10)
	}
	stockSKU(t, g, twin, 10)
	deadline := time.Now().Add(time.Hour)

	lines := []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 2}, {SKU: twin, Qty: 3}, {SKU: "green", Qty: 4}}
	if got, err := g.Reserve(ctx, "o1", lines, deadline); err != nil || got != stock.Reserved {
		t.Fatalf("Reserve(o1) = %v, %v, want %v, nil", got, err, stock.Reserved)
	}
	if got, err := g.Reserve(ctx, "o1", lines, deadline); err != nil || got != stock.AlreadyHeld {
		t.Errorf("repeated Reserve(o1) = %v, %v, want %v, nil", got, err, stock.AlreadyHeld)
	}
	for _, l := range lines {
		wantLevels(t, g, stock.Levels{SKU: l.SKU, Available: 10 - l.Qty, Held: l.Qty, Stocked: true})
	}
	all := []string{"red", "blue", twin, "green"}
	if res, err := g.Commit(ctx, "o1", all); err != nil || res.Units != 10 {
		t.Errorf("Commit(o1) = %+v, %v, want 10 units, nil", res, err)
	}
	if got, err := g.Reserve(ctx, "o1", lines, deadline); err != nil || got != stock.AlreadyCommitted {
		t.Errorf("Reserve(o1) after Commit = %v, %v, want %v, nil", got, err, stock.AlreadyCommitted)
	}

	// A later slot group that is short gives back what earlier groups took.
	if _, err := g.Reserve(ctx, "o2", lines, deadline); err != nil {
		t.Fatalf("Reserve(o2) = %v, want nil", err)
	}
	if units, err := g.Release(ctx, "o2", all); err != nil || units != 10 {
		t.Errorf("Release(o2) = %d, %v, want 10, nil", units, err)
	}
	short := []stock.Line{{SKU: "red", Qty: 1}, {SKU: twin, Qty: 1}, {SKU: "blue", Qty: 1}, {SKU: "green", Qty: 7}}
	_, err := g.Reserve(ctx, "o3", short, deadline)
	if diff := cmp.Diff(error(&stock.OutOfStockError{SKU: "green", Available: 6}), err); diff != "" {
		t.Errorf("Reserve(o3) error mismatch (-want +got):\n%s", diff)
	}
	_, err = g.Reserve(ctx, "o4", []stock.Line{{SKU: "blue", Qty: 1}, {SKU: "ghost", Qty: 1}}, deadline)
	if diff := cmp.Diff(error(&stock.NotStockedError{SKU: "ghost"}), err); diff != "" {
		t.Errorf("Reserve(o4) error mismatch (-want +got):\n%s", diff)
	}
	for _, l := range lines {
		wantLevels(t, g, stock.Levels{SKU: l.SKU, Available: 10 - l.Qty, Sold: l.Qty, Stocked: true})
	}
	if n, err := g.OpenHolds(ctx); err != nil || n != 0 {
		t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
	}
	if n := cc.Exists(ctx, stock.HoldKey("red", "o3"), stock.HoldKey("blue", "o4"), stock.AvailKey("ghost")).Val(); n != 0 {
		t.Errorf("EXISTS holds of o3, o4 and ghost's stock = %d, want 0", n)
	}
}

// scriptLog records the keys of every script call, to check how an order
// was split into calls.
type scriptLog struct {
	mu    sync.Mutex
	calls [][]string
	// after, when set, runs after each script call returns.
	after func()
}

func (*scriptLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *scriptLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := strings.ToLower(cmd.Name())
		if name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		args := cmd.Args()
		n, _ := strconv.Atoi(fmt.Sprint(args[2]))
		keys := make([]string, n)
		for i := range n {
			keys[i] = fmt.Sprint(args[3+i])
		}
		err := next(ctx, cmd)
		if errors.Is(err, redis.ErrNoScript) || (err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")) {
			return err // the EVAL fallback that follows is the call that counts
		}
		l.mu.Lock()
		l.calls = append(l.calls, keys)
		after := l.after
		l.mu.Unlock()
		if after != nil {
			after()
		}
		return err
	}
}

func (*scriptLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// keySlot is the cluster slot of a stock key, from its {SKU} tag.
func keySlot(key string) int {
	i, j := strings.Index(key, "{"), strings.Index(key, "}")
	return stock.Slot(key[i+1 : j])
}

// TestClusterGroupingOnOneNode forces the per-slot path on a plain client
// and checks the calls it makes: one reserve per slot group, each within one
// slot, and a release of the earlier groups when a later one fails.
func TestClusterGroupingOnOneNode(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	type testBundle struct {
		gate *stock.Gate
		log  *scriptLog
		twin string
	}

	setup := func(t *testing.T) *testBundle {
		t.Helper()
		_, rdb := newGate(t, stock.Config{})
		log := &scriptLog{}
		rdb.AddHook(log)
		g := stock.New(rdb, stock.Config{Cluster: true})
		twin := sameSlotSKU(t, "red")
		for _, s := range []string{"red", twin, "blue"} {
			stockSKU(t, g, s, 5)
		}
		if stock.Slot("red") == stock.Slot("blue") {
			t.Fatal("Slot(red) = Slot(blue): the test needs different slots")
		}
		return &testBundle{gate: g, log: log, twin: twin}
	}

	// slotsOf checks that each call stays in one slot and returns the slots.
	slotsOf := func(t *testing.T, calls [][]string) []int {
		t.Helper()
		var out []int
		for _, keys := range calls {
			s := keySlot(keys[0])
			for _, k := range keys {
				if keySlot(k) != s {
					t.Errorf("script call with keys %v spans slots %d and %d", keys, s, keySlot(k))
				}
			}
			out = append(out, s)
		}
		return out
	}

	t.Run("OneCallPerSlotGroup", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.log.calls = nil

		lines := []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 1}, {SKU: b.twin, Qty: 1}}
		if got, err := b.gate.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour)); err != nil || got != stock.Reserved {
			t.Fatalf("Reserve(o1) = %v, %v, want %v, nil", got, err, stock.Reserved)
		}
		want := []int{stock.Slot("red"), stock.Slot("blue")}
		if diff := cmp.Diff(want, slotsOf(t, b.log.calls)); diff != "" {
			t.Errorf("slots of the reserve calls mismatch (-want +got):\n%s", diff)
		}
		if n := len(b.log.calls[0]); n != 10 {
			t.Errorf("keys in the first call = %d, want 10 (red and its slot twin)", n)
		}
	})

	t.Run("LaterGroupFailureReleasesEarlierGroups", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.log.calls = nil

		lines := []stock.Line{{SKU: "red", Qty: 2}, {SKU: b.twin, Qty: 1}, {SKU: "blue", Qty: 6}}
		_, err := b.gate.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour))
		if diff := cmp.Diff(error(&stock.OutOfStockError{SKU: "blue", Available: 5}), err); diff != "" {
			t.Errorf("Reserve(o1) error mismatch (-want +got):\n%s", diff)
		}
		// reserve red group, reserve blue group (short), release red group.
		want := []int{stock.Slot("red"), stock.Slot("blue"), stock.Slot("red")}
		if diff := cmp.Diff(want, slotsOf(t, b.log.calls)); diff != "" {
			t.Errorf("slots of the script calls mismatch (-want +got):\n%s", diff)
		}
		for _, s := range []string{"red", b.twin, "blue"} {
			wantLevels(t, b.gate, stock.Levels{SKU: s, Available: 5, Stocked: true})
		}
		if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
			t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
		}
	})

	t.Run("CancelledCallerStillReleasesEarlierGroups", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The caller gives up right after the first group was reserved.
		b.log.after = cancel

		lines := []stock.Line{{SKU: "red", Qty: 2}, {SKU: "blue", Qty: 1}}
		if _, err := b.gate.Reserve(cctx, "o1", lines, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
			t.Errorf("Reserve(o1) = %v, want context.Canceled", err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "red", Available: 5, Stocked: true})
		if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
			t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
		}
	})
}
