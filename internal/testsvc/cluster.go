package testsvc

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of private redis-servers on free loopback
// ports, made by StartCluster. It never touches the machine's shared Redis.
type Cluster struct {
	// Nodes are every server, masters and replicas, in the order they were
	// started; which is which is the cluster's to say (Masters).
	Nodes []*Redis
}

// clusterReadyTimeout bounds the wait for a new cluster to agree on its
// slots, and for each replica to finish its first sync.
const clusterReadyTimeout = time.Minute

// StartCluster starts masters*(1+replicasPerMaster) redis-servers in
// cluster mode, joins them with redis-cli --cluster create (16384 slots
// split evenly over the masters, in the order the nodes were started), and
// waits until every node sees every slot served and every replica is in
// sync. The servers are killed at the test's cleanup. extra are more
// config arguments for every node.
func StartCluster(tb testing.TB, masters, replicasPerMaster int, extra ...string) *Cluster {
	tb.Helper()
	if masters < 1 || replicasPerMaster < 0 {
		tb.Fatalf("StartCluster(%d, %d): want at least one master", masters, replicasPerMaster)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatal("redis-cli is not on PATH (apt-get install redis-tools)")
	}
	c := &Cluster{}
	addrs := make([]string, 0, masters*(1+replicasPerMaster))
	for range masters * (1 + replicasPerMaster) {
		n := startClusterNode(tb, extra)
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.waitReady(tb, masters)
	return c
}

// startClusterNode starts one cluster-mode server. The cluster bus needs a
// second port (port+10000 by default, which may be taken or out of range),
// so one is picked, and a lost race for either port is retried.
func startClusterNode(tb testing.TB, extra []string) *Redis {
	tb.Helper()
	var lastErr error
	for range 3 {
		bus, err := FreePort()
		if err != nil {
			lastErr = err
			continue
		}
		args := append([]string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}, extra...)
		r, err := StartRedis(tb.TempDir(), args...)
		if err == nil {
			tb.Cleanup(r.Stop)
			return r
		}
		lastErr = err
	}
	tb.Fatalf("start a cluster node: %v", lastErr)
	return nil
}

// waitReady polls until every running node reports cluster_state:ok with
// masters masters, and every replica's link to its master is up.
func (c *Cluster) waitReady(tb testing.TB, masters int) {
	tb.Helper()
	ctx := context.Background()
	Poll(tb, clusterReadyTimeout, "every cluster node to see all slots served and every replica in sync", func() bool {
		for _, n := range c.Nodes {
			if n.Pid() == 0 {
				continue
			}
			cl := n.Client(0)
			info, err := cl.ClusterInfo(ctx).Result()
			repl, rerr := cl.Info(ctx, "replication").Result()
			_ = cl.Close()
			if err != nil || rerr != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, fmt.Sprintf("cluster_size:%d", masters)) {
				return false
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return false
			}
		}
		return true
	})
}

// URL is the cluster in go-redis's cluster URL form, every node a seed:
// redis://host:port?addr=host2:port2&… (the form REDIS_URL takes with
// REDIS_CLUSTER=true).
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr
	}
	return u
}

// Client returns a new ClusterClient on every node; the caller closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
}

// SlotOwner is the address of the master that serves slot, as the first
// running node answers CLUSTER SHARDS.
func (c *Cluster) SlotOwner(tb testing.TB, slot int) string {
	tb.Helper()
	for _, sh := range c.Shards(tb) {
		for _, r := range sh.Slots {
			if int64(slot) >= r.Start && int64(slot) <= r.End {
				return sh.Master
			}
		}
	}
	tb.Fatalf("no master serves slot %d", slot)
	return ""
}

// Shard is one master and the slots it serves.
type Shard struct {
	Master string // host:port
	Slots  []redis.SlotRange
}

// Shards is the cluster's masters with their slots, from CLUSTER SHARDS on
// the first running node.
func (c *Cluster) Shards(tb testing.TB) []Shard {
	tb.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		if n.Pid() == 0 {
			continue
		}
		cl := n.Client(0)
		shards, err := cl.ClusterShards(ctx).Result()
		_ = cl.Close()
		if err != nil {
			tb.Fatalf("CLUSTER SHARDS on %s: %v", n.Addr, err)
		}
		var out []Shard
		for _, sh := range shards {
			for _, node := range sh.Nodes {
				if node.Role == "master" && node.Health == "online" && len(sh.Slots) > 0 {
					out = append(out, Shard{Master: fmt.Sprintf("%s:%d", node.IP, node.Port), Slots: sh.Slots})
				}
			}
		}
		return out
	}
	tb.Fatal("no cluster node is running")
	return nil
}

// MoveEmptySlot makes the master at to serve slot, which must hold no key
// yet, the way redis-cli --cluster reshard moves a slot (IMPORTING,
// MIGRATING, then NODE on both ends and the other masters), and waits
// until every node agrees. Tests use it to give a queue shard a master of
// its own.
func (c *Cluster) MoveEmptySlot(tb testing.TB, slot int, to string) {
	tb.Helper()
	ctx := context.Background()
	from := c.SlotOwner(tb, slot)
	if from == to {
		return
	}
	ids := map[string]string{}
	clients := map[string]*redis.Client{}
	for _, n := range c.Nodes {
		if n.Pid() == 0 {
			continue
		}
		cl := n.Client(0)
		defer cl.Close()
		id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			tb.Fatalf("CLUSTER MYID on %s: %v", n.Addr, err)
		}
		ids[n.Addr], clients[n.Addr] = id, cl
	}
	if clients[from] == nil || clients[to] == nil {
		tb.Fatalf("MoveEmptySlot(%d, %s): no running node %s or %s", slot, to, from, to)
	}
	if n, err := clients[from].ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != 0 {
		tb.Fatalf("slot %d holds %d keys (%v): MoveEmptySlot moves empty slots only", slot, n, err)
	}
	steps := []struct {
		node string
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]}},
		{to, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}},
	}
	for _, sh := range c.Shards(tb) {
		if sh.Master != from && sh.Master != to {
			steps = append(steps, struct {
				node string
				args []any
			}{sh.Master, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}})
		}
	}
	for _, st := range steps {
		if err := clients[st.node].Do(ctx, st.args...).Err(); err != nil {
			tb.Fatalf("%v on %s: %v", st.args, st.node, err)
		}
	}
	Poll(tb, clusterReadyTimeout, fmt.Sprintf("every node to see slot %d on %s", slot, to), func() bool {
		for _, cl := range clients {
			slots, err := cl.ClusterSlots(ctx).Result()
			if err != nil {
				return false
			}
			ok := false
			for _, s := range slots {
				if int64(slot) >= int64(s.Start) && int64(slot) <= int64(s.End) && len(s.Nodes) > 0 && s.Nodes[0].Addr == to {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	})
}
