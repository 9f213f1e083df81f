package main

import (
	"io"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestBadSettingChangesNothing: a bad setting is refused with one line and
// exit status 2 before the worker connects or migrates, so the database it
// points at has no tables and Redis no keys.
func TestBadSettingChangesNothing(t *testing.T) {
	t.Setenv("ADMIN_USER", "")
	t.Setenv("ADMIN_PASSWORD", "")
	worker := func(args []string, stdout, stderr io.Writer) int { return command(t.Context(), args, stdout, stderr) }
	testsvc.CheckRefusals(t, worker, []testsvc.Refusal{
		{Name: "public admin address without auth", Args: []string{"--admin-addr", "0.0.0.0:0"},
			Want: `worker: admin address "0.0.0.0:0": refusing to listen on a non-loopback address`},
		{Name: "admin address without a port", Args: []string{"--admin-addr", "localhost"}, Want: "want host:port"},
		{Name: "rate limit without a window", Args: []string{"--rate-limit", "5", "--rate-window", "0s"}, Want: "--rate-window 0s must be at least 1ms"},
		{Name: "cluster with a db number", Args: []string{"--redis-cluster"}, Want: "a Redis Cluster has database 0 only"},
		{Name: "cluster seeds without cluster mode", Args: []string{"--redis-url", "redis://u:s3cret@127.0.0.1:1?addr=127.0.0.1:2"},
			Want: "redis url redis://u:xxxxx@127.0.0.1:1?addr=127.0.0.1:2 names cluster seeds (addr=), which only cluster mode reads"},
		{Name: "no queue shards", Args: []string{"--queue-shards", "0"}, Want: "worker: --queue-shards 0 must be 1..64"},
		{Name: "redis url with another scheme", Args: []string{"--redis-url", "http://127.0.0.1:1"}, Want: "worker: redis url http://"},
		{Name: "database url with a bad port", Args: []string{"--database-url", "postgres://u:s3cret@h:port/db"},
			Want: "worker: database url postgres://u:xxxxx@h:port/db is not"},
	})
}
