package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestBadSettingChangesNothing: a bad setting is refused with one line and
// exit status 2 before enqueue connects, the settings a command does not
// use too, so nothing is enqueued (Redis has no key).
func TestBadSettingChangesNothing(t *testing.T) {
	t.Parallel()
	enqueue := func(args []string, stdout, stderr io.Writer) int {
		return run(t.Context(), args, strings.NewReader(""), stdout, stderr)
	}
	sale := []string{"flash-sale", "--sku", "SKU-1", "--buyers", "3"}
	testsvc.CheckRefusals(t, enqueue, []testsvc.Refusal{
		{Name: "negative retention", Args: []string{"--retention", "-1s", "order", "--customer", "c-1", "SKU-1=1"},
			Want: "enqueue: usage: --retention -1s must be >= 0"},
		{Name: "cluster with a db number", Args: append([]string{"--redis-cluster"}, sale...), Want: "a Redis Cluster has database 0 only"},
		{Name: "cluster seeds without cluster mode", Args: []string{"--redis-url", "redis://u:s3cret@127.0.0.1:1?addr=127.0.0.1:2", "order", "--customer", "c-1", "SKU-1=1"},
			Want: "redis url redis://u:xxxxx@127.0.0.1:1?addr=127.0.0.1:2 names cluster seeds (addr=), which only cluster mode reads"},
		{Name: "too many queue shards", Args: append([]string{"--queue-shards", "65"}, sale...), Want: "enqueue: usage: --queue-shards 65 must be 1..64"},
		{Name: "negative max retry", Args: append([]string{"--max-retry", "-1"}, sale...), Want: "enqueue: usage: --max-retry -1 must be >= 0"},
		// Only --wait reads Postgres: without the check the sale would run.
		{Name: "flash sale with a bad database url", Args: append([]string{"--database-url", "postgres://u:s3cret@h:port/db"}, sale...),
			Want: "enqueue: usage: database url postgres://u:xxxxx@h:port/db is not"},
		{Name: "wait that gives up at once", Args: append(sale, "--wait", "--wait-timeout", "0s"),
			Want: "enqueue flash-sale: usage: --wait-timeout must be positive"},
	})
}
