package orders

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/migrations"
)

// TestMain stops the package's private redis-server and drops its
// databases, then looks for leaked goroutines: every test closes its pools
// and clients, so anything left running is a leak in the code or a test.
func TestMain(m *testing.M) {
	os.Exit(testsvc.Finish(m.Run()))
}

// testPool gives a test a pool on its own freshly migrated database, closed
// and dropped at cleanup. Tests that commit use it instead of sharing rows.
func testPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testsvc.NewDatabase(t))
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs first: the pool
	// closes before its database is dropped.
	t.Cleanup(pool.Close)
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}
