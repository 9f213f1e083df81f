// Package migrations owns the Postgres schema: the goose SQL migrations
// embedded from this folder, and the one way to apply them, under an
// advisory lock so that any number of workers and `stockctl migrate` may
// start at once.
//
// It must not hold queries of the order domain; those live in
// internal/orders. A migration, once released, is never edited: a change is
// a new file. Files are named NNNNN_name.sql in goose's format.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed *.sql
var files embed.FS

// LockID is the Postgres advisory lock key Migrate holds while it runs:
// "stockgat" in ASCII, so it cannot collide with goose's own default key.
const LockID int64 = 0x73746f636b676174

// cleanupTimeout bounds releasing the lock and closing its connection.
const cleanupTimeout = 5 * time.Second

// versionTable is goose's bookkeeping table (its default name).
const versionTable = goose.DefaultTablename

// Result says what one Migrate did.
type Result struct {
	Applied []string // file names applied by this call, in order
	Version int64    // the schema version afterwards
}

// Migrate applies every pending migration. Callers racing each other queue
// on a session-level advisory lock held on a connection of its own, taken
// out of the pool so that closing it releases the lock whatever happened;
// each caller then finds the work done by the one before it and applies
// nothing. ctx bounds the wait for the lock too.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := Up(ctx, pool)
	return err
}

// Up is Migrate, reporting what it applied.
func Up(ctx context.Context, pool *pgxpool.Pool) (Result, error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("migrate: acquire lock connection: %w", err)
	}
	lockConn := pc.Hijack()
	// Cleanup outlives ctx, which may be why we are leaving, but not a dead
	// server. Closing the session drops the lock even if the unlock fails.
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	defer lockConn.Close(cleanupCtx)
	// pg_advisory_lock blocks in the server; goose's own session locker
	// would poll once every few seconds instead, slowing every worker start
	// that races another.
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		return Result{}, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// Best effort: the deferred Close drops the lock if this fails.
		_, _ = lockConn.Exec(cleanupCtx, "SELECT pg_advisory_unlock($1)", LockID)
	}()

	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return Result{}, err
	}
	results, err := p.Up(ctx)
	var res Result
	for _, r := range results {
		if r.Error == nil {
			res.Applied = append(res.Applied, path.Base(r.Source.Path))
		}
	}
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if res.Version, err = p.GetDBVersion(ctx); err != nil {
		return res, fmt.Errorf("migrate: read version: %w", err)
	}
	return res, nil
}

// Pending counts the migrations not yet applied, for /readyz: a worker
// whose schema is behind its binary must not take orders. It never writes:
// on a database goose has not touched yet, every migration is pending.
func Pending(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var exists bool
	// goose would create its version table to answer; a probe must not.
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return 0, err
	}
	if !exists {
		return len(p.ListSources()), nil
	}
	status, err := p.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	n := 0
	for _, s := range status {
		if s.State == goose.StatePending {
			n++
		}
	}
	return n, nil
}

// Latest is the version of the newest embedded migration.
func Latest() int64 {
	var latest int64
	entries, _ := files.ReadDir(".")
	for _, e := range entries {
		if v, err := goose.NumericComponent(e.Name()); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

func provider(db *sql.DB) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		// Only these files: a Go migration registered globally by some
		// other import must never run against this schema.
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if len(p.ListSources()) == 0 {
		return nil, errors.New("migrations: no migrations embedded")
	}
	return p, nil
}
