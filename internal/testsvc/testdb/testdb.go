// Package testdb gives a test a freshly migrated database of its own. It is
// apart from testsvc because the migrations package's own tests use testsvc,
// and testsvc importing migrations would make an import cycle.
//
// It is imported only from _test.go files.
package testdb

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/migrations"
)

// New returns a pool on a new database with every migration applied. The
// pool is closed, and the database dropped, at the test's cleanup. Tests
// that commit use it instead of sharing rows.
func New(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	_, pool := NewURL(tb)
	return pool
}

// NewURL is New for a test that also hands the database's URL to code that
// connects by itself (a client, a command).
func NewURL(tb testing.TB) (string, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	url := testsvc.NewDatabase(tb)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		tb.Fatalf("pgxpool.New: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs first: the pool
	// closes before its database is dropped.
	tb.Cleanup(pool.Close)
	if err := migrations.Migrate(ctx, pool); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return url, pool
}
