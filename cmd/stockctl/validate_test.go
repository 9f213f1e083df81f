package main

import (
	"io"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestBadSettingChangesNothing: every command checks every setting before
// it connects, the ones it does not use too: a bad one is refused with one
// line and exit status 2, and neither the database nor Redis is changed.
func TestBadSettingChangesNothing(t *testing.T) {
	t.Parallel()
	stockctl := func(args []string, stdout, stderr io.Writer) int { return run(t.Context(), args, stdout, stderr) }
	testsvc.CheckRefusals(t, stockctl, []testsvc.Refusal{
		// migrate does not use Redis: without the check it would migrate.
		{Name: "migrate with a bad redis url", Args: []string{"--redis-url", "http://127.0.0.1:1", "migrate"}, Want: "stockctl: usage: redis url http://"},
		{Name: "set with a bad database url", Args: []string{"--database-url", "postgres://u:s3cret@h:port/db", "set", "SKU-1", "5"},
			Want: "stockctl: usage: database url postgres://u:xxxxx@h:port/db is not"},
		{Name: "migrate in cluster mode with a db number", Args: []string{"--redis-cluster", "migrate"},
			Want: "stockctl: usage: redis url redis://127.0.0.1:"},
		{Name: "set with cluster seeds without cluster mode", Args: []string{"--redis-url", "redis://:s3cret@127.0.0.1:1?addr=127.0.0.1:2", "set", "SKU-1", "5"},
			Want: "names cluster seeds (addr=), which only cluster mode reads: set --redis-cluster or REDIS_CLUSTER=true"},
		{Name: "show with a negative redis db", Args: []string{"--redis-url", "redis://127.0.0.1:1/-1", "show"}, Want: "db -1 must be >= 0"},
	})
}
