// Package devsvc brings up the Redis and Postgres that stockgate runs and is
// tested against, the one implementation behind make run, make test, the
// benchmarks and internal/testsvc:
//
//   - redis-server processes on a free loopback port (Redis);
//   - Postgres clusters made with initdb and run with pg_ctl, as the
//     postgres OS user when we are root, since Postgres refuses root
//     (Postgres, PostgresBinDir);
//   - for a checkout, the choice make run and make test make: a URL that
//     answers, else docker compose when a Docker engine runs, else local
//     servers under ./.data that outlive the command (Services).
//
// It never stops, flushes or reconfigures a server it did not start: what
// it stops is named by a pid file or data directory under ./.data, or by
// the compose services it recorded starting. It installs nothing itself;
// a caller that may install (the services command, through scripts/deps.sh)
// says so with Services.Install. It knows nothing of stock or orders.
package devsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// DefaultTestDatabaseURL is the Postgres the tests create their databases
// on when TEST_DATABASE_URL is not set: a local server with trust auth.
const DefaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// FreePort returns want when nothing listens on 127.0.0.1:want, else (or
// when want is 0) a port the kernel picks. It binds rather than connects:
// a server on 0.0.0.0 or [::] holds the loopback port too.
func FreePort(want int) (int, error) {
	if want > 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(want))); err == nil {
			l.Close()
			return want, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ModuleRoot finds the stockgate module's root from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			s := bufio.NewScanner(f)
			ours := s.Scan() && strings.Contains(s.Text(), "stockgate")
			f.Close()
			if ours {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the stockgate module root (go.mod) is not above the working directory")
		}
		dir = parent
	}
}

// probeTimeout bounds one look at whether a server answers.
const probeTimeout = 5 * time.Second

// RedisAnswers reports whether the Redis at rawURL answers PING.
func RedisAnswers(ctx context.Context, rawURL string) bool {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return false
	}
	opt.MaxRetries, opt.DialTimeout = -1, probeTimeout
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return c.Ping(ctx).Err() == nil
}

// PostgresAnswers reports whether the Postgres at rawURL accepts a
// connection.
func PostgresAnswers(ctx context.Context, rawURL string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		return false
	}
	defer c.Close(ctx)
	return c.Ping(ctx) == nil
}

// Redact is rawURL with its password, if any, shown as xxxxx.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// EnsureDatabase creates database name on the server adminURL reaches,
// unless it exists, and returns adminURL with its path pointed at it.
func EnsureDatabase(ctx context.Context, adminURL, name string) (string, error) {
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return WithDatabase(adminURL, name)
}

// WithDatabase is the Postgres URL rawURL with its database set to name.
func WithDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("not a valid Postgres URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}
