package stock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// newReplicated starts a private master and one replica of it, in sync.
func newReplicated(t *testing.T) (master, replica *redis.Client) {
	t.Helper()
	ctx := context.Background()
	m := testsvc.NewRedis(t)
	r := testsvc.NewRedis(t)
	master, replica = m.Client(0), r.Client(0)
	t.Cleanup(func() { _ = master.Close(); _ = replica.Close() })
	host, port, _ := strings.Cut(m.Addr, ":")
	if err := replica.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF %s: %v", m.Addr, err)
	}
	testsvc.Poll(t, 30*time.Second, "replica in sync", func() bool {
		return strings.Contains(replica.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	return master, replica
}

func TestWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := newReplicated(t)
	g := stock.New(master, stock.Config{WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond})
	stockSKU(t, g, "W", 10)
	deadline := time.Now().Add(time.Hour)

	// With the replica attached, the reserve and the commit return only
	// once the replica has them.
	res := mustReserve(t, g, "o-1", []stock.Line{{SKU: "W", Qty: 2}}, deadline)
	if got := replica.HGet(ctx, stock.HoldKey("W", "o-1"), "state").Val(); got != "held" {
		t.Fatalf("replica's hold state after Reserve = %q, want held", got)
	}
	if _, err := g.Commit(ctx, "o-1", res.Token, []string{"W"}); err != nil {
		t.Fatalf("Commit(o-1) = %v, want nil", err)
	}
	if got := replica.Get(ctx, stock.SoldKey("W")).Val(); got != "2" {
		t.Fatalf("replica's sold after Commit = %q, want 2", got)
	}

	// Detached, the reserve still takes the hold on the master, and says
	// it is not replicated: an infrastructure error, retried.
	if err := replica.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatalf("REPLICAOF NO ONE: %v", err)
	}
	testsvc.Poll(t, 10*time.Second, "master sees no replica", func() bool {
		return strings.Contains(master.Info(ctx, "replication").Val(), "connected_slaves:0")
	})
	if _, err := g.Reserve(ctx, "o-2", []stock.Line{{SKU: "W", Qty: 3}}, deadline); !errors.Is(err, stock.ErrNotReplicated) {
		t.Fatalf("Reserve(o-2) without a replica = %v, want ErrNotReplicated", err)
	}
	if got := master.HGet(ctx, stock.HoldKey("W", "o-2"), "state").Val(); got != "held" {
		t.Fatalf("master's hold state after the unreplicated Reserve = %q, want held (the hold stays for the retry)", got)
	}

	// Reattached, the retry finds its hold (writing nothing itself) and
	// still waits until the replica has it.
	host, port, _ := strings.Cut(master.Options().Addr, ":")
	if err := replica.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}
	testsvc.Poll(t, 30*time.Second, "replica in sync again", func() bool {
		return strings.Contains(replica.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	r2, err := g.Reserve(ctx, "o-2", []stock.Line{{SKU: "W", Qty: 3}}, deadline)
	if err != nil || r2.Outcome != stock.AlreadyHeld {
		t.Fatalf("Reserve(o-2) again = %v, %v; want already_held, nil", r2.Outcome, err)
	}
	if got := replica.HGet(ctx, stock.HoldKey("W", "o-2"), "state").Val(); got != "held" {
		t.Fatalf("replica's hold state after the retry = %q, want held", got)
	}
	wantLevels(t, g, stock.Levels{SKU: "W", Stocked: true, Available: 5, Held: 3, Sold: 2})
}

// TestWaitReplicasCluster runs the waited reserve and commit of an order
// whose lines sit on three masters: each master's WAIT must go to that
// master, on the connection that ran its script.
func TestWaitReplicasCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a six-node cluster")
	}
	ctx := context.Background()
	c := testsvc.StartCluster(t, 3, 1)
	rdb := c.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	g := stock.New(rdb, stock.Config{WaitReplicas: 1})
	var lines []stock.Line
	masters := map[string]bool{}
	for _, sku := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		owner := c.SlotOwner(t, stock.Slot(sku))
		if !masters[owner] {
			masters[owner] = true
			stockSKU(t, g, sku, 5)
			lines = append(lines, stock.Line{SKU: sku, Qty: 1})
		}
	}
	if len(masters) != 3 {
		t.Fatalf("SKUs on %d masters, want 3", len(masters))
	}
	res := mustReserve(t, g, "o-1", lines, time.Now().Add(time.Hour))
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	got, err := g.Commit(ctx, "o-1", res.Token, skus)
	if err != nil || got.Units != int64(len(lines)) {
		t.Fatalf("Commit(o-1) = %+v, %v; want %d units", got, err, len(lines))
	}
}
