package conn_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }

// TestRedisModes: each mode opens the kind of server it is for, and refuses
// the other kind at start with one line saying which setting to change.
func TestRedisModes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testsvc.StartCluster(t, 3, 0)
	plain := testsvc.SharedRedis(t)

	t.Run("ClusterOnCluster", func(t *testing.T) {
		// One seed is enough: go-redis finds the other masters.
		c, err := conn.Redis(ctx, "redis://"+cl.Nodes[1].Addr, true)
		if err != nil {
			t.Fatalf("conn.Redis(one seed, cluster) = %v, want a client", err)
		}
		defer c.Close()
		if _, ok := c.(*redis.ClusterClient); !ok {
			t.Fatalf("conn.Redis(cluster) = %T, want *redis.ClusterClient", c)
		}
		var mu sync.Mutex
		var seen []string
		err = conn.ForEachMaster(ctx, c, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, n.Options().Addr)
			return nil
		})
		if err != nil || len(seen) != 3 {
			t.Errorf("ForEachMaster visited %q, %v; want the 3 masters", seen, err)
		}
	})
	t.Run("ClusterURLOnCluster", func(t *testing.T) {
		c, err := conn.Redis(ctx, cl.URL(), true)
		if err != nil {
			t.Fatalf("conn.Redis(%s, cluster) = %v, want a client", cl.URL(), err)
		}
		_ = c.Close()
	})
	for _, c := range []struct {
		name, url string
		cluster   bool
		want      string
	}{
		{"SingleOnCluster", "redis://" + cl.Nodes[0].Addr + "/0", false, "is a Redis Cluster node: set --redis-cluster or REDIS_CLUSTER=true"},
		{"ClusterOnSingle", plain.URL(0), true, "is not a Redis Cluster node"},
		{"ClusterDB", "redis://" + cl.Nodes[0].Addr + "/3", true, "a Redis Cluster has database 0 only"},
		{"SeedsWithoutCluster", cl.URL(), false, "names cluster seeds (addr=), which only cluster mode reads"},
		{"ClusterPasswordRedacted", "redis://u:s3cret@" + cl.Nodes[0].Addr + "/0", true, "xxxxx"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rdb, err := conn.Redis(ctx, c.url, c.cluster)
			if err == nil {
				_ = rdb.Close()
				t.Fatalf("conn.Redis(%s, cluster=%v) = a client, want an error with %q", c.url, c.cluster, c.want)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
				t.Errorf("conn.Redis(%s, cluster=%v) = %q, want one line with %q and no password", c.url, c.cluster, msg, c.want)
			}
		})
	}
}
