// Package testsvc gives tests real services of their own: a private
// redis-server on a free port and a private Postgres database on the shared
// server. It never flushes, stops or reconfigures the machine's shared Redis
// or Postgres, so test packages can run in parallel with each other and with
// whatever else uses those services.
//
// It is imported only from _test.go files and test harnesses.
package testsvc

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// DefaultAdminURL is the Postgres the tests create their databases on when
// TEST_DATABASE_URL is not set: the machine's shared server with trust auth.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Redis is a redis-server process owned by one test package or test.
type Redis struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	args []string
}

// URL is the redis:// URL of database db on this server.
func (r *Redis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

// Client returns a new go-redis client on database db.
func (r *Redis) Client(db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, DB: db})
}

// FreePort asks the kernel for a free TCP port on loopback.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartRedis starts a redis-server on a free loopback port with its data in
// dir (a fresh temp dir when empty). extra are additional config arguments
// such as "--appendonly", "yes". Call Stop when done.
func StartRedis(dir string, extra ...string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (make test installs it): %w", err)
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "stockgate-redis-"); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--maxmemory-policy", "noeviction", "--databases", "16",
	}
	args = append(args, extra...)
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, args: append([]string{bin}, args...)}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Start (re)starts the server process with the arguments it was created with.
func (r *Redis) Start() error {
	r.cmd = exec.Command(r.args[0], r.args[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// Under --requirepass the server answers PING with NOAUTH; that is
		// up. Other error replies (LOADING) are not.
		var reply redis.Error
		if err == nil || (errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOAUTH")) {
			return nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("redis-server on %s did not answer: %w", r.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: a crash, not a shutdown) and waits for it.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
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
	dir, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// moduleRoot is RepoRoot for callers without a testing.TB (TestMain).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			s := bufio.NewScanner(strings.NewReader(string(b)))
			if s.Scan() && strings.Contains(s.Text(), "stockgate") {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root not found")
		}
		dir = parent
	}
}
