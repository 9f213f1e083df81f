package testsvc

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// PostgresOptions configures a private Postgres server.
type PostgresOptions struct {
	// Password, when set, becomes the postgres superuser's password and TCP
	// connections must give it (scram-sha-256). Empty means trust.
	Password string
	// TLS, when set, turns ssl on and admits TCP connections over TLS only
	// (hostssl), so a plain connection is refused by the server.
	TLS *PostgresTLS
}

// PostgresTLS is the server's certificate and key, in PEM files.
type PostgresTLS = devsvc.PostgresTLS

// Postgres is a private Postgres cluster (initdb'd for one test) listening
// on a free loopback port. Unlike the shared server that NewDatabase uses,
// it may be stopped, restarted and configured at will.
type Postgres = devsvc.Postgres

// StartPostgres initdb's a cluster into a fresh directory, starts it on a
// free 127.0.0.1 port and waits until it accepts connections. It trades
// durability for speed (no fsync). The cluster is stopped (immediate) and
// its directory removed at the test's cleanup.
func StartPostgres(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	// Not tb.TempDir: its parents are private to root, and as root the
	// cluster belongs to the postgres user. os.TempDir is world-traversable.
	dir, err := os.MkdirTemp("", "stockgate-pg-")
	if err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	p, err := devsvc.NewPostgres(devsvc.PostgresOptions{Dir: dir, Password: opts.Password, TLS: opts.TLS, Throwaway: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		tb.Fatalf("StartPostgres: %v", err)
	}
	tb.Cleanup(func() {
		_ = p.StopImmediate()
		_ = os.RemoveAll(dir)
	})
	if err := p.Init(); err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	if err := p.Start(); err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	return p
}
