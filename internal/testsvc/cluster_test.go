package testsvc_test

import (
	"context"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestStartCluster: a 3-master, 1-replica-each cluster comes up with every
// slot served by one of three masters, each in sync with a replica.
func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := testsvc.StartCluster(t, 3, 1)
	shards := c.Shards(t)
	if len(shards) != 3 {
		t.Fatalf("Shards() = %+v, want 3 masters", shards)
	}
	var slots int64
	for _, sh := range shards {
		for _, r := range sh.Slots {
			slots += r.End - r.Start + 1
		}
	}
	if slots != 16384 {
		t.Errorf("masters serve %d slots, want 16384", slots)
	}
	cc := c.Client()
	defer cc.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := cc.Set(ctx, k, "1", 0).Err(); err != nil {
			t.Fatalf("SET %s through the cluster client: %v", k, err)
		}
	}
}
