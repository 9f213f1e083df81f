package devsvc_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/devsvc"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain looks for leaked goroutines: a server this package started and
// stopped must leave nothing waiting on it.
func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }

func TestFreePort(t *testing.T) {
	t.Parallel()
	// Another process may take a free port between the two calls, so the
	// wanted port is tried a few times before the test calls it wrong.
	var free, got int
	for range 5 {
		var err error
		if free, err = devsvc.FreePort(0); err != nil {
			t.Fatal(err)
		}
		if got, err = devsvc.FreePort(free); err != nil {
			t.Fatal(err)
		}
		if got == free {
			break
		}
	}
	if got != free {
		t.Errorf("FreePort(%d) of a free port = %d five times running; want %d", free, got, free)
	}
	// A server on 0.0.0.0 holds the loopback port too.
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	if got, err := devsvc.FreePort(taken); got == taken || got == 0 || err != nil {
		t.Errorf("FreePort(%d) of a taken port = %d, %v; want another port", taken, got, err)
	}
}

// TestPostgresBinDirHonoursPGBINDIR: PG_BINDIR is the only place looked at
// when set, and a wrong one says so rather than quietly using another.
func TestPostgresBinDirHonoursPGBINDIR(t *testing.T) {
	found, err := devsvc.PostgresBinDir()
	if err != nil {
		t.Skipf("no Postgres server binaries here: %v", err)
	}
	copyDir := t.TempDir()
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := os.Symlink(filepath.Join(found, tool), filepath.Join(copyDir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PG_BINDIR", copyDir)
	if got, err := devsvc.PostgresBinDir(); got != copyDir || err != nil {
		t.Errorf("PostgresBinDir() with PG_BINDIR=%s = %q, %v; want it", copyDir, got, err)
	}
	empty := t.TempDir()
	t.Setenv("PG_BINDIR", empty)
	if got, err := devsvc.PostgresBinDir(); err == nil || !strings.Contains(err.Error(), "PG_BINDIR="+empty) || errors.Is(err, devsvc.ErrNoPostgres) {
		t.Errorf("PostgresBinDir() with an empty PG_BINDIR = %q, %v; want an error naming PG_BINDIR, not ErrNoPostgres", got, err)
	}
}

// TestStartRedisFailsFast: a server that exits at start is reported at
// once, with what it said, not after the start-up timeout.
func TestStartRedisFailsFast(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := devsvc.StartRedis(devsvc.RedisOptions{Dir: t.TempDir(), Args: []string{"--no-such-directive", "1"}})
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "no-such-directive") {
		t.Errorf("StartRedis with a bad directive = %v, want exited at start with redis-server's complaint", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StartRedis with a bad directive took %v, want well under the 10s start-up timeout", d)
	}
}

// TestStopPidFile: only a process that is ours is signalled; a stale or
// foreign pid file is dropped without a signal.
func TestStopPidFile(t *testing.T) {
	t.Parallel()
	sleep := exec.Command("sleep", "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		<-done
	})
	// Start returns once the child is in execve, which may not yet have
	// set up its new argv (/proc/PID/cmdline reads empty meanwhile; a
	// loaded machine stretches that window): the checks below need it.
	for deadline := time.Now().Add(10 * time.Second); !slices.Equal(devsvc.Cmdline(sleep.Process.Pid), []string{"sleep", "300"}); {
		if time.Now().After(deadline) {
			t.Fatalf("sleep's cmdline = %q after 10s, want [sleep 300]", devsvc.Cmdline(sleep.Process.Pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	write := func() {
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	notOurs := func(argv []string) bool { return slices.Contains(argv, "redis-server") }
	if pid, err := devsvc.StopPidFile(pidFile, notOurs, time.Second); pid != 0 || err != nil || !devsvc.Alive(sleep.Process.Pid) {
		t.Fatalf("StopPidFile of a foreign process = %d, %v (alive %v); want 0, nil and the process untouched", pid, err, devsvc.Alive(sleep.Process.Pid))
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("StopPidFile left the foreign pid file: %v", err)
	}
	write()
	ours := func(argv []string) bool { return len(argv) == 2 && argv[0] == "sleep" && argv[1] == "300" }
	if pid, err := devsvc.StopPidFile(pidFile, ours, 10*time.Second); pid != sleep.Process.Pid || err != nil {
		t.Fatalf("StopPidFile of our process = %d, %v; want %d, nil", pid, err, sleep.Process.Pid)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the process StopPidFile stopped is still running")
	}
	done <- nil // for the cleanup
}

// deadURL is a Postgres URL nothing answers at.
func deadURL(t *testing.T) string {
	t.Helper()
	port, err := devsvc.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"
}

// newServices is Services over a fresh checkout with no compose file, on
// free ports (never 6379 and 5432: those may be the machine's).
func newServices(t *testing.T, root string) *devsvc.Services {
	t.Helper()
	redisPort, err := devsvc.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	pgPort, err := devsvc.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	return &devsvc.Services{
		Root: root, Log: testLog{t},
		RedisPort: redisPort, PostgresPort: pgPort,
		TestDatabaseURL: deadURL(t),
		Docker:          filepath.Join(root, "no-docker"),
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestServicesLocal is make run and make test on a machine with nothing
// answering and no Docker: local servers under ./.data that a second Up
// finds again, that Down stops, and that Clean deletes. Run as root, the
// test's checkout is closed to the postgres user, so the cluster lives in
// /var/tmp behind a symlink.
func TestServicesLocal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	s := newServices(t, root)
	t.Cleanup(func() {
		if err := s.Clean(ctx); err != nil {
			t.Errorf("Clean: %v", err)
		}
	})

	env, err := s.Up(ctx, devsvc.Run)
	if err != nil {
		t.Fatalf("Up(Run) = %v", err)
	}
	if !slices.Equal(env.Started, []string{"redis", "pg"}) {
		t.Errorf("Up(Run).Started = %q, want [redis pg]", env.Started)
	}
	if !devsvc.RedisAnswers(ctx, env.RedisURL) || !devsvc.PostgresAnswers(ctx, env.DatabaseURL) {
		t.Fatalf("Up(Run) = %+v, but its URLs do not answer", env)
	}
	if !strings.HasSuffix(strings.Split(env.DatabaseURL, "?")[0], "/stockgate") {
		t.Errorf("Up(Run).DatabaseURL = %s, want the stockgate database", env.DatabaseURL)
	}
	b, err := os.ReadFile(filepath.Join(root, ".data", "env"))
	if err != nil || !strings.Contains(string(b), "export REDIS_URL='"+env.RedisURL+"'\n") ||
		!strings.Contains(string(b), "export DATABASE_URL='"+env.DatabaseURL+"'\n") {
		t.Errorf(".data/env = %q, %v; want both URLs exported", b, err)
	}
	if os.Geteuid() == 0 {
		if target, err := os.Readlink(filepath.Join(root, ".data", "pg")); err != nil || !strings.HasPrefix(target, "/var/tmp/stockgate-pg-") {
			t.Errorf(".data/pg as root with the checkout closed to postgres: Readlink = %q, %v; want a symlink into /var/tmp", target, err)
		}
	}

	again, err := s.Up(ctx, devsvc.Run)
	if err != nil || len(again.Started) != 0 || again.RedisURL != env.RedisURL || again.DatabaseURL != env.DatabaseURL {
		t.Errorf("a second Up(Run) = %+v, %v; want the same URLs and nothing started", again, err)
	}
	// Nothing answers at TestDatabaseURL: the tests get the running cluster.
	tenv, err := s.Up(ctx, devsvc.Test)
	if err != nil || len(tenv.Started) != 0 || !devsvc.PostgresAnswers(ctx, tenv.TestDatabaseURL) {
		t.Errorf("Up(Test) with the cluster running = %+v, %v; want its URL, nothing started", tenv, err)
	}
	if st := s.Status(ctx); !strings.Contains(st, "redis:    running") || !strings.Contains(st, "postgres: running") {
		t.Errorf("Status() = %q, want both running", st)
	}

	// URLs that answer are used as they are, and nothing is started.
	other := newServices(t, t.TempDir())
	other.RedisURL, other.DatabaseURL = env.RedisURL, env.DatabaseURL
	if oenv, err := other.Up(ctx, devsvc.Run); err != nil || len(oenv.Started) != 0 || oenv.RedisURL != env.RedisURL || oenv.DatabaseURL != env.DatabaseURL {
		t.Errorf("Up(Run) with answering URLs = %+v, %v; want them, nothing started", oenv, err)
	}

	if err := s.Down(ctx); err != nil {
		t.Fatalf("Down() = %v", err)
	}
	if devsvc.RedisAnswers(ctx, env.RedisURL) || devsvc.PostgresAnswers(ctx, env.DatabaseURL) {
		t.Errorf("after Down, Redis answers %v, Postgres %v; want neither", devsvc.RedisAnswers(ctx, env.RedisURL), devsvc.PostgresAnswers(ctx, env.DatabaseURL))
	}
	// Up test with nothing running starts the cluster and says so, for the
	// caller to stop.
	tenv, err = s.Up(ctx, devsvc.Test)
	if err != nil || !slices.Equal(tenv.Started, []string{"pg"}) {
		t.Errorf("Up(Test) with the cluster stopped = %+v, %v; want it started", tenv, err)
	}
	if err := s.Down(ctx, tenv.Started...); err != nil || devsvc.PostgresAnswers(ctx, tenv.TestDatabaseURL) {
		t.Errorf("Down(%q) = %v; want the cluster stopped", tenv.Started, err)
	}

	target, _ := os.Readlink(filepath.Join(root, ".data", "pg"))
	if err := s.Clean(ctx); err != nil {
		t.Fatalf("Clean() = %v", err)
	}
	for _, dir := range []string{filepath.Join(root, ".data"), target} {
		if _, err := os.Lstat(dir); dir != "" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Clean, %s: %v; want it gone", dir, err)
		}
	}
}

// TestServicesCompose drives the docker compose path with a stand-in for
// the docker client (no Docker engine runs on the build machines): it
// publishes a private Redis and a private password-protected Postgres as
// the compose services. Up must find their host ports, read the password
// from the container, create the database, create .env with fresh
// passwords, and Down must stop exactly the services Up started.
func TestServicesCompose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const password = "compose-pw-1"
	r := testsvc.NewRedis(t)
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{Password: password})

	root := t.TempDir()
	calls := filepath.Join(root, "docker.calls")
	fake := `#!/bin/sh
echo "$*" >>` + calls + `
case "$*" in
info | "compose version" | "compose up -d --wait "* | "compose stop "*) ;;
"compose port redis 6379") echo "127.0.0.1:` + strconv.Itoa(r.Port) + `" ;;
"compose port postgres 5432") echo "0.0.0.0:` + strconv.Itoa(pg.Port) + `" ;;
"compose ps -q postgres") echo c0ffee ;;
"inspect --format "*" c0ffee") printf 'PATH=/usr/bin\nPOSTGRES_USER=postgres\nPOSTGRES_PASSWORD=` + password + `\n' ;;
*) echo "fake docker: unexpected $*" >&2; exit 1 ;;
esac
`
	files := map[string]string{
		"docker":             fake,
		"docker-compose.yml": "services: {}\n",
		".env.example":       "# comment\nPOSTGRES_PASSWORD=change-me\nADMIN_PASSWORD=change-me\nPOSTGRES_USER=stockgate\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := newServices(t, root)
	s.Docker = filepath.Join(root, "docker")

	env, err := s.Up(ctx, devsvc.Run)
	if err != nil {
		t.Fatalf("Up(Run) through compose = %v", err)
	}
	if want := r.URL(0); env.RedisURL != want {
		t.Errorf("RedisURL = %s, want %s", env.RedisURL, want)
	}
	if want := "postgres://postgres:" + password + "@127.0.0.1:" + strconv.Itoa(pg.Port) + "/stockgate?sslmode=disable"; env.DatabaseURL != want {
		t.Errorf("DatabaseURL = %s, want %s", env.DatabaseURL, want)
	}
	if !devsvc.PostgresAnswers(ctx, env.DatabaseURL) {
		t.Errorf("the stockgate database was not created: %s does not answer", env.DatabaseURL)
	}
	if !slices.Equal(env.Started, []string{"compose"}) {
		t.Errorf("Started = %q, want [compose]", env.Started)
	}

	dotenv, err := os.ReadFile(filepath.Join(root, ".env"))
	if err != nil {
		t.Fatalf(".env was not created: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(dotenv)), "\n")
	if len(lines) != 4 || lines[0] != "# comment" || lines[3] != "POSTGRES_USER=stockgate" {
		t.Errorf(".env = %q, want .env.example's lines with only the passwords changed", dotenv)
	}
	pw1, pw2 := strings.TrimPrefix(lines[1], "POSTGRES_PASSWORD="), strings.TrimPrefix(lines[2], "ADMIN_PASSWORD=")
	if len(pw1) < 20 || pw1 == pw2 || strings.Contains(string(dotenv), "change-me") {
		t.Errorf(".env passwords %q and %q: want two different random ones", pw1, pw2)
	}
	// An existing .env is never touched.
	if err := devsvc.Dotenv(root, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(root, ".env")); string(again) != string(dotenv) {
		t.Errorf("Dotenv rewrote an existing .env: %q, want %q", again, dotenv)
	}

	if err := s.Down(ctx); err != nil {
		t.Fatalf("Down() = %v", err)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"compose up -d --wait redis\n", "compose up -d --wait postgres\n", "compose stop redis postgres\n"} {
		if strings.Count(string(b), want) != 1 {
			t.Errorf("docker calls:\n%s\nwant %q once", b, want)
		}
	}
	if err := s.Down(ctx, "compose"); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(calls); strings.Count(string(b2), "compose stop") != 1 {
		t.Errorf("a second Down stopped compose services again:\n%s", b2)
	}
	if !devsvc.RedisAnswers(ctx, r.URL(0)) {
		t.Error("Down signalled a Redis it did not start")
	}
}
