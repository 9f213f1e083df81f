// Package testsvc gives tests real services of their own: a private
// redis-server on a free port, a private Postgres database on the shared
// server, private Postgres servers, and the real binaries as processes. It
// never flushes, stops or reconfigures the machine's shared Redis or
// Postgres, so test packages can run in parallel with each other and with
// whatever else uses those services. Starting the servers is
// internal/devsvc's job, the same code make run uses; this package adds the
// test defaults and the cleanup.
//
// It is imported only from _test.go files and test harnesses.
package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// DefaultAdminURL is the Postgres the tests create their databases on when
// TEST_DATABASE_URL is not set: the machine's shared server with trust auth.
const DefaultAdminURL = devsvc.DefaultTestDatabaseURL

// Redis is a private redis-server (devsvc starts it).
type Redis = devsvc.Redis

// FreePort asks the kernel for a free TCP port on loopback.
func FreePort() (int, error) { return devsvc.FreePort(0) }

// StartRedis starts a redis-server for tests on a free loopback port with
// its data in dir (a fresh temp dir when empty): no persistence, 16
// databases. extra are additional config arguments such as "--appendonly",
// "yes". Call Stop when done.
func StartRedis(dir string, extra ...string) (*Redis, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "stockgate-redis-"); err != nil {
			return nil, err
		}
	}
	return devsvc.StartRedis(devsvc.RedisOptions{
		Dir:  dir,
		Args: append([]string{"--save", "", "--appendonly", "no", "--databases", "16"}, extra...),
	})
}

// NewRedis starts a private redis-server for one test and stops it at cleanup.
func NewRedis(tb testing.TB, extra ...string) *Redis {
	tb.Helper()
	r, err := StartRedis(tb.TempDir(), extra...)
	if err != nil {
		tb.Fatalf("StartRedis: %v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// NewClusterNode starts a private redis-server in cluster mode that owns
// every slot: a one-node Redis Cluster. It refuses a script whose keys
// span two slots (CROSSSLOT), just as a real cluster would.
func NewClusterNode(t testing.TB) *Redis {
	t.Helper()
	ctx := context.Background()
	// The cluster bus needs a second port (port+10000 by default, which may
	// be taken or out of range), so pick one, and retry a lost port race.
	var r *Redis
	var err error
	for range 3 {
		var bus int
		if bus, err = FreePort(); err != nil {
			continue
		}
		r, err = StartRedis(t.TempDir(), "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "1000")
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("StartRedis in cluster mode: %v", err)
	}
	t.Cleanup(r.Stop)
	c := r.Client(0)
	defer c.Close()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	Poll(t, 10*time.Second, "cluster_state:ok", func() bool {
		return strings.Contains(c.ClusterInfo(ctx).Val(), "cluster_state:ok")
	})
	return r
}

var (
	pkgRedisOnce sync.Once
	pkgRedis     *Redis
	pkgRedisErr  error
	// freeDBs holds the package server's databases 1-15 (0 is left alone),
	// each lent to one live test at a time.
	freeDBs = func() chan int {
		c := make(chan int, 15)
		for db := 1; db <= 15; db++ {
			c <- db
		}
		return c
	}()
)

// SharedRedis is one private redis-server per test binary (per package),
// started on first use. Stop it from TestMain with StopShared.
func SharedRedis(tb testing.TB) *Redis {
	tb.Helper()
	pkgRedisOnce.Do(func() { pkgRedis, pkgRedisErr = StartRedis("") })
	if pkgRedisErr != nil {
		tb.Fatalf("StartRedis: %v", pkgRedisErr)
	}
	return pkgRedis
}

// RedisDB lends a test its own database on the package's private server,
// flushed before use and after the test. A test waits for a database while
// fifteen others hold one, rather than share one that could be flushed
// under it.
func RedisDB(tb testing.TB) (*Redis, int, *redis.Client) {
	tb.Helper()
	r := SharedRedis(tb)
	var db int
	select {
	case db = <-freeDBs:
	case <-time.After(2 * time.Minute):
		tb.Fatal("no free Redis database after 2m: fifteen tests hold one")
	}
	c := r.Client(db)
	tb.Cleanup(func() {
		_ = c.FlushDB(context.Background()).Err()
		_ = c.Close()
		freeDBs <- db
	})
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		tb.Fatalf("FLUSHDB %d: %v", db, err)
	}
	return r, db, c
}

// StopShared stops the package's private redis-server and drops the
// package's databases, if any were made. Call it from TestMain.
func StopShared() {
	if pkgRedis != nil {
		pkgRedis.Stop()
		_ = os.RemoveAll(pkgRedis.Dir)
	}
	dropAll()
}

// Finish ends a test binary: it stops the package's private redis-server,
// drops its databases and, when the tests passed, fails the run on leaked
// goroutines (every test closes its pools and clients, so anything left
// running is a leak in the code or a test). Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }
func Finish(code int) int {
	StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// AdminURL is the Postgres URL tests create their databases through.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

var (
	dbMu      sync.Mutex
	createdDB []string
)

// NewDatabase creates an empty database with a unique name on the test
// Postgres server and returns its URL. It is dropped at the test's cleanup.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	u, name, err := CreateDatabase(context.Background())
	if err != nil {
		tb.Fatalf("CreateDatabase: %v", err)
	}
	tb.Cleanup(func() { _ = DropDatabase(context.Background(), name) })
	return u
}

// CreateDatabase creates a uniquely named database and returns its URL and
// name. StopShared drops any that are still there.
func CreateDatabase(ctx context.Context) (dsn, name string, err error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "stockgate_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", "", fmt.Errorf("connect to test postgres (set TEST_DATABASE_URL): %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", err
	}
	dbMu.Lock()
	createdDB = append(createdDB, name)
	dbMu.Unlock()
	pu, err := url.Parse(AdminURL())
	if err != nil {
		return "", "", err
	}
	pu.Path = "/" + name
	return pu.String(), name, nil
}

// DropDatabase drops a database made by CreateDatabase, closing its sessions.
func DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

func dropAll() {
	dbMu.Lock()
	names := createdDB
	createdDB = nil
	dbMu.Unlock()
	for _, n := range names {
		_ = DropDatabase(context.Background(), n)
	}
}

// Poll calls cond every 10ms until it returns true or timeout passes, and
// fails the test with msg when it never does. Tests wait with Poll, never Sleep.
func Poll(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Refusal is a command line that a command must refuse before its first
// side effect: exit status 2, nothing on stdout and one line on stderr
// holding Want.
type Refusal struct {
	Name string
	Args []string
	Want string
}

// CheckRefusals runs each refusal through run, a command's entry point in
// process, with --redis-url and --database-url before its arguments naming
// a Redis database and a Postgres database of the test's own, and checks
// the refusal and that both are left Untouched.
func CheckRefusals(t *testing.T, run func(args []string, stdout, stderr io.Writer) int, refusals []Refusal) {
	t.Helper()
	r, db, rdb := RedisDB(t)
	dbURL := NewDatabase(t)
	for _, rf := range refusals {
		t.Run(rf.Name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(append([]string{"--redis-url", r.URL(db), "--database-url", dbURL}, rf.Args...), &stdout, &stderr)
			line, ok := strings.CutSuffix(stderr.String(), "\n")
			if code != 2 || stdout.Len() > 0 || !ok || strings.Contains(line, "\n") || !strings.Contains(line, rf.Want) {
				t.Fatalf("%q = %d, stdout %q, stderr %q; want 2, nothing on stdout and one line with %q", rf.Args, code, stdout.String(), stderr.String(), rf.Want)
			}
			Untouched(t, dbURL, rdb)
		})
	}
}

// Untouched fails tb unless the database at dbURL has no table and rdb's
// database no key: what a command that refused a setting before its first
// side effect leaves behind. Either may be left out ("" or nil).
func Untouched(tb testing.TB, dbURL string, rdb *redis.Client) {
	tb.Helper()
	ctx := context.Background()
	if dbURL != "" {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			tb.Fatalf("connect to the test database: %v", err)
		}
		defer conn.Close(ctx)
		rows, _ := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(tables) > 0 {
			tb.Errorf("the database has tables %q (%v), want none", tables, err)
		}
	}
	if rdb != nil {
		if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
			tb.Errorf("redis has %d keys (%v), want none", n, err)
		}
	}
}

// RepoRoot finds the module root from the test's working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := devsvc.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}
