package orders_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/stockgate/stockgate/internal/orders"
)

func TestQueues(t *testing.T) {
	t.Parallel()
	if got := orders.Queues(1); !slices.Equal(got, []string{"orders"}) {
		t.Errorf("Queues(1) = %q, want [orders]", got)
	}
	if got := orders.Queues(3); !slices.Equal(got, []string{"orders-0", "orders-1", "orders-2"}) {
		t.Errorf("Queues(3) = %q, want [orders-0 orders-1 orders-2]", got)
	}
	for _, n := range []int{0, -1, orders.MaxQueueShards + 1} {
		if orders.CheckQueueShards(n) == nil {
			t.Errorf("CheckQueueShards(%d) = nil, want an error", n)
		}
	}
}

// TestQueueFor pins the routing: FNV-1a 32 of the order id, mod n. A
// change here moves retained orders to other shards, where Asynq's TaskID
// dedupe no longer sees them (README "Contracts").
func TestQueueFor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id   string
		n    int
		want string
	}{
		// FNV-1a 32: "" = 0x811c9dc5, "a" = 0xe40c292c, "o-1" = 0xf5906368.
		{"", 3, "orders-" + string('0'+rune(0x811c9dc5%3))},
		{"a", 3, "orders-" + string('0'+rune(0xe40c292c%3))},
		{"a", 1, "orders"},
		{"o-1", 4, "orders-" + string('0'+rune(0xf5906368%4))},
	} {
		if got := orders.QueueFor(c.id, c.n); got != c.want {
			t.Errorf("QueueFor(%q, %d) = %q, want %q", c.id, c.n, got, c.want)
		}
	}
	// Every shard gets orders, and each order id one shard, always.
	seen := map[string]int{}
	for i := range 3000 {
		id := "o-" + strconv.Itoa(i)
		q := orders.QueueFor(id, 3)
		if q != orders.QueueFor(id, 3) || !slices.Contains(orders.Queues(3), q) {
			t.Fatalf("QueueFor(%q, 3) = %q, not stable or not a shard", id, q)
		}
		seen[q]++
	}
	for _, q := range orders.Queues(3) {
		if seen[q] < 500 {
			t.Errorf("shard %s got %d of 3000 orders, want about a third", q, seen[q])
		}
	}
}

func TestIsQueue(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]bool{
		"orders": true, "orders-0": true, "orders-12": true, "orders-": false, "orders-01": false,
		"orders-x": false, "orders-1-2": false, "ordersx": false, "default": false, "orders-99999999": false,
	} {
		if got := orders.IsQueue(q); got != want {
			t.Errorf("IsQueue(%q) = %v, want %v", q, got, want)
		}
	}
}
