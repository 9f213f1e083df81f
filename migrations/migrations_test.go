package migrations

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain drops the package's databases, then looks for leaked
// goroutines: Migrate opens a database/sql handle and a lock connection per
// call, and must close both.
func TestMain(m *testing.M) {
	os.Exit(testsvc.Finish(m.Run()))
}

// newPool opens a pool on dsn, closed at cleanup: one per simulated worker.
func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func tables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestMigrateConcurrently starts four "workers" on one database at once,
// as a rolling deploy does: all must succeed, exactly one applies the
// migrations, and the others find them applied.
//
// On a fresh database goose's own retry around creating its version table
// happens to space the racers out by a second, which would hide a missing
// lock; the upgrade case, where that table already exists, is the one a
// missing lock fails.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name         string
		versionTable bool // goose has run here before: an upgrade
	}{
		{name: "fresh database"},
		{name: "upgrade", versionTable: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testMigrateConcurrently(t, tt.versionTable)
		})
	}
}

func testMigrateConcurrently(t *testing.T, versionTable bool) {
	ctx := context.Background()
	dsn := testsvc.NewDatabase(t)
	const workers = 4
	pools := make([]*pgxpool.Pool, workers)
	for i := range pools {
		pools[i] = newPool(t, dsn)
		// Connect now, so that the workers race on the migration itself
		// rather than on who dials first.
		if err := pools[i].Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}

	entries, err := files.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := Pending(ctx, pools[0])
	if err != nil {
		t.Fatalf("Pending() on an empty database = %v, want nil", err)
	}
	if pending != len(entries) || pending == 0 {
		t.Errorf("Pending() on an empty database = %d, want %d (every embedded file)", pending, len(entries))
	}
	if got := tables(t, pools[0]); len(got) != 0 {
		t.Errorf("tables after Pending() = %v, want none: a readiness probe must not write", got)
	}
	if versionTable {
		db := stdlib.OpenDBFromPool(pools[0])
		p, err := provider(db)
		if err == nil {
			_, err = p.GetDBVersion(ctx) // creates goose's table at version 0
		}
		db.Close()
		if err != nil {
			t.Fatalf("creating goose's version table: %v", err)
		}
		if n, err := Pending(ctx, pools[0]); err != nil || n != len(entries) {
			t.Fatalf("Pending() with only goose's table = %d, %v; want %d, nil", n, err, len(entries))
		}
	}

	results := make([]Result, workers)
	errs := make([]error, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-start
			results[i], errs[i] = Up(ctx, pools[i])
		})
	}
	close(start)
	wg.Wait()

	var applied []string
	for i := range workers {
		if errs[i] != nil {
			t.Fatalf("worker %d: Up() = %v, want nil", i, errs[i])
		}
		if results[i].Version != Latest() {
			t.Errorf("worker %d: Up().Version = %d, want %d", i, results[i].Version, Latest())
		}
		applied = append(applied, results[i].Applied...)
	}
	var want []string
	for _, e := range entries {
		want = append(want, e.Name())
	}
	slices.Sort(applied)
	if diff := cmp.Diff(want, applied); diff != "" {
		t.Errorf("files applied across %d concurrent workers (-want +got), want each exactly once:\n%s", workers, diff)
	}

	wantTables := []string{"goose_db_version", "order_lines", "orders", "products", "stock_movements"}
	if diff := cmp.Diff(wantTables, tables(t, pools[0])); diff != "" {
		t.Errorf("tables after Up() mismatch (-want +got):\n%s", diff)
	}

	// Idempotent: another run applies nothing, and nothing is pending.
	res, err := Up(ctx, pools[1])
	if err != nil || len(res.Applied) != 0 || res.Version != Latest() {
		t.Errorf("Up() again = %+v, %v; want nothing applied at version %d", res, err, Latest())
	}
	if err := Migrate(ctx, pools[2]); err != nil {
		t.Errorf("Migrate() again = %v, want nil", err)
	}
	if n, err := Pending(ctx, pools[3]); err != nil || n != 0 {
		t.Errorf("Pending() after Up() = %d, %v; want 0, nil", n, err)
	}

	// The lock was released: this database's sessions can take it at once.
	// (Advisory locks are per database, so parallel tests do not interfere.)
	var got bool
	if err := pools[0].QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", LockID).Scan(&got); err != nil || !got {
		t.Errorf("pg_try_advisory_lock(LockID) after Up() = %v, %v; want true: Migrate must release its lock", got, err)
	}
}

// TestMigrateWaitsForLock holds the lock as another migrator would, and
// checks that Up waits for it within its context rather than going ahead.
func TestMigrateWaitsForLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t, testsvc.NewDatabase(t))

	holder, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	waitCtx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := Up(waitCtx, pool)
		done <- err
	}()
	// Up is queued on the lock once Postgres shows a session waiting for it.
	testsvc.Poll(t, 10*time.Second, "Up() to wait on the advisory lock", func() bool {
		var waiting bool
		_ = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
			WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted)`).Scan(&waiting)
		return waiting
	})
	if got := tables(t, pool); len(got) != 0 {
		t.Errorf("tables while another holds the lock = %v, want none", got)
	}
	cancel()
	if err := <-done; err == nil {
		t.Errorf("Up() with its context cancelled while waiting = nil, want an error")
	}

	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate() once the lock is free = %v, want nil", err)
	}
}
