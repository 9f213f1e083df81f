package orders

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// DefaultQueueShards is one queue, Queue, as before shards existed.
const DefaultQueueShards = 1

// MaxQueueShards bounds QUEUE_SHARDS: every worker consumes every shard,
// and an idle worker's look for a task costs a script per shard.
const MaxQueueShards = 64

// CheckQueueShards refuses a shard count outside 1..MaxQueueShards.
func CheckQueueShards(n int) error {
	if n < 1 || n > MaxQueueShards {
		return fmt.Errorf("queue shards %d must be 1..%d", n, MaxQueueShards)
	}
	return nil
}

// Queues are the queues of n shards, the ones a worker consumes: Queue
// alone for n = 1 (or less), Queue-0 … Queue-(n-1) otherwise. Asynq keeps
// each queue's keys under the {queue} hash tag, so each shard is one Redis
// Cluster slot, and n shards spread the queue traffic over up to n masters.
func Queues(n int) []string {
	if n <= 1 {
		return []string{Queue}
	}
	qs := make([]string, n)
	for i := range qs {
		qs[i] = shardName(i)
	}
	return qs
}

// QueueFor is the queue an order travels on among n shards: shard
// FNV-1a-32(order_id) mod n (README "Contracts"). Every producer routes
// through it, so an order id always lands on the same shard while n is
// unchanged, and Asynq's TaskID dedupe, which is per queue, holds. Tasks
// of one order (order:place, and any later task about the same order)
// share its shard.
func QueueFor(orderID string, n int) string {
	if n <= 1 {
		return Queue
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(orderID))
	return shardName(int(h.Sum32() % uint32(n)))
}

func shardName(i int) string { return Queue + "-" + strconv.Itoa(i) }

// IsQueue reports whether name is an order queue of some shard count:
// Queue, or Queue-K. A worker also drains such queues outside its own
// shards, so that changing the shard count strands no task.
func IsQueue(name string) bool {
	if name == Queue {
		return true
	}
	rest, ok := strings.CutPrefix(name, Queue+"-")
	if !ok || rest == "" || len(rest) > 1 && rest[0] == '0' {
		return false
	}
	_, err := strconv.ParseUint(rest, 10, 16)
	return err == nil
}
