package devsvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mode says what Up brings services up for.
type Mode int

const (
	// Run is make run's: a Redis and a Postgres with the demo's database,
	// in ./.data/env as REDIS_URL and DATABASE_URL.
	Run Mode = iota
	// Test is make test's: redis-server and the Postgres server binaries
	// installed (the tests start private servers of both), and a Postgres
	// to make databases on, in ./.data/test.env as TEST_DATABASE_URL.
	Test
)

// Services are the Redis and Postgres of one checkout. Servers it starts
// itself live under Root/.data and outlive the process:
//
//	.data/redis/      redis-server's files, redis.pid, port, redis.log
//	.data/pg          the Postgres cluster (or a symlink to it, see Up)
//	.data/pg.port     the port it last listened on
//	.data/env         REDIS_URL and DATABASE_URL for `. .data/env`
//	.data/test.env    TEST_DATABASE_URL
//	.data/compose.started   the compose services Up started
type Services struct {
	// Root is the checkout. Required.
	Root string
	// Log receives progress, one line a step; nil discards it.
	Log io.Writer
	// Install, when set, installs a missing tool, "redis-server" or
	// "postgres" (the server binaries), so that Up can go on. Without it a
	// missing tool is an error.
	Install func(tool string) error

	// RedisURL and DatabaseURL (REDIS_URL, DATABASE_URL) are used for Run
	// when they answer.
	RedisURL, DatabaseURL string
	// TestDatabaseURL (TEST_DATABASE_URL) is used for Test when it
	// answers; default DefaultTestDatabaseURL.
	TestDatabaseURL string
	// Database is the demo's database, created on a Postgres Up starts;
	// default stockgate.
	Database string
	// RedisPort and PostgresPort are the ports a local server gets when
	// they are free and it has not had one before; default 6379 and 5432.
	RedisPort, PostgresPort int
	// Docker is the docker client; default "docker" on PATH.
	Docker string
}

func (s *Services) validate() error {
	if s.Root == "" {
		return errors.New("services: Root is required")
	}
	s.Database = cmp.Or(s.Database, "stockgate")
	s.TestDatabaseURL = cmp.Or(s.TestDatabaseURL, DefaultTestDatabaseURL)
	s.RedisPort = cmp.Or(s.RedisPort, 6379)
	s.PostgresPort = cmp.Or(s.PostgresPort, 5432)
	s.Docker = cmp.Or(s.Docker, "docker")
	return nil
}

// Env is what Up brought up.
type Env struct {
	RedisURL, DatabaseURL string // Run
	TestDatabaseURL       string // Test
	// Started lists what this Up started ("redis", "pg", "compose"), for
	// Down; a server that was already running is not in it.
	Started []string
}

// Vars are the environment variables that reach the services, NAME=value.
func (e Env) Vars() []string {
	var vars []string
	for _, v := range [][2]string{{"REDIS_URL", e.RedisURL}, {"DATABASE_URL", e.DatabaseURL}, {"TEST_DATABASE_URL", e.TestDatabaseURL}} {
		if v[1] != "" {
			vars = append(vars, v[0]+"="+v[1])
		}
	}
	return vars
}

// Exports is Vars as shell export lines, single-quoted.
func (e Env) Exports() string {
	var b strings.Builder
	for _, v := range e.Vars() {
		name, value, _ := strings.Cut(v, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", name, strings.ReplaceAll(value, "'", `'\''`))
	}
	return b.String()
}

func (s *Services) data(elem ...string) string {
	return filepath.Join(append([]string{s.Root, ".data"}, elem...)...)
}

func (s *Services) logf(format string, args ...any) {
	if s.Log != nil {
		fmt.Fprintf(s.Log, "==> "+format+"\n", args...)
	}
}

// Up brings up what mode needs and writes its environment file.
//
// For Run, Redis and Postgres are chosen separately: RedisURL or
// DatabaseURL when it answers; else docker compose when a Docker engine
// answers and the checkout has a compose file; else a local server under
// ./.data (Redis with AOF and noeviction; Postgres with trust auth), on
// the preferred port when free. The demo's database is created on a
// Postgres Up started.
//
// For Test, TestDatabaseURL when it answers, else the local cluster.
//
// As root the cluster belongs to the postgres user; when that user cannot
// enter ./.data (a checkout under /root), the cluster lives in
// /var/tmp/stockgate-pg-HASH and ./.data/pg is a symlink to it.
func (s *Services) Up(ctx context.Context, mode Mode) (Env, error) {
	if err := s.validate(); err != nil {
		return Env{}, err
	}
	if err := os.MkdirAll(s.data(), 0o755); err != nil {
		return Env{}, err
	}
	var env Env
	var err error
	file := "env"
	if mode == Test {
		env, err = s.upTest(ctx)
		file = "test.env"
	} else {
		env, err = s.upRun(ctx)
	}
	if err != nil {
		return env, err
	}
	body := fmt.Sprintf("# written by internal/devsvc; source it to reach the same services\n%s", env.Exports())
	tmp := s.data(file + ".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return env, err
	}
	return env, os.Rename(tmp, s.data(file))
}

func (s *Services) upRun(ctx context.Context) (Env, error) {
	var env Env
	var compose *bool
	useCompose := func() bool {
		if compose == nil {
			ok := s.composeUsable(ctx)
			compose = &ok
		}
		return *compose
	}
	started := func(what string) {
		if !slices.Contains(env.Started, what) {
			env.Started = append(env.Started, what)
		}
	}

	if s.RedisURL != "" && RedisAnswers(ctx, s.RedisURL) {
		s.logf("redis: using REDIS_URL (it answers)")
		env.RedisURL = s.RedisURL
	} else {
		if s.RedisURL != "" {
			s.logf("warning: REDIS_URL %s does not answer; bringing up one of our own", Redact(s.RedisURL))
		}
		var err error
		if useCompose() {
			env.RedisURL, err = s.composeRedis(ctx)
			started("compose")
		} else {
			var ours bool
			env.RedisURL, ours, err = s.localRedis(ctx)
			if ours {
				started("redis")
			}
		}
		if err != nil {
			return env, err
		}
	}

	if s.DatabaseURL != "" && PostgresAnswers(ctx, s.DatabaseURL) {
		s.logf("postgres: using DATABASE_URL (it answers)")
		env.DatabaseURL = s.DatabaseURL
		return env, nil
	}
	if s.DatabaseURL != "" {
		s.logf("warning: DATABASE_URL %s does not answer; bringing up one of our own", Redact(s.DatabaseURL))
	}
	if useCompose() {
		var err error
		env.DatabaseURL, err = s.composePostgres(ctx)
		started("compose")
		return env, err
	}
	p, ours, err := s.localPostgres(ctx)
	if ours {
		started("pg")
	}
	if err != nil {
		return env, err
	}
	s.logf("postgres: database %s", s.Database)
	env.DatabaseURL, err = EnsureDatabase(ctx, p.URL("postgres"), s.Database)
	return env, err
}

func (s *Services) upTest(ctx context.Context) (Env, error) {
	var env Env
	// The tests start private redis-servers and Postgres clusters; they
	// need the binaries whatever answers.
	if _, err := s.redisServer(); err != nil {
		return env, err
	}
	if _, err := s.postgresBinDir(); err != nil {
		return env, err
	}
	if PostgresAnswers(ctx, s.TestDatabaseURL) {
		s.logf("postgres: tests use %s", Redact(s.TestDatabaseURL))
		env.TestDatabaseURL = s.TestDatabaseURL
		return env, nil
	}
	s.logf("postgres: nothing answers at %s; using the local cluster", Redact(s.TestDatabaseURL))
	p, ours, err := s.localPostgres(ctx)
	if ours {
		env.Started = append(env.Started, "pg")
	}
	if err != nil {
		return env, err
	}
	env.TestDatabaseURL = p.URL("postgres")
	return env, nil
}

// redisServer is RedisServer, installing it through Install when missing.
func (s *Services) redisServer() (string, error) {
	return s.ensure("redis-server", RedisServer, ErrNoRedisServer)
}

// postgresBinDir is PostgresBinDir, installing Postgres through Install
// when nothing is found (not when PG_BINDIR is wrong: installing would not
// mend that).
func (s *Services) postgresBinDir() (string, error) {
	return s.ensure("postgres", PostgresBinDir, ErrNoPostgres)
}

// ensure calls find, and when it fails with missing, has Install install
// tool and calls find again.
func (s *Services) ensure(tool string, find func() (string, error), missing error) (string, error) {
	found, err := find()
	if errors.Is(err, missing) && s.Install != nil {
		if err := s.Install(tool); err != nil {
			return "", err
		}
		found, err = find()
	}
	return found, err
}

// readPort reads a port a server had before, or gives def.
func readPort(path string, def int) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
		return p
	}
	return def
}

func isRedisServer(argv []string) bool {
	return len(argv) > 0 && strings.Contains(strings.Join(argv, " "), "redis-server")
}

// localRedis reuses the redis-server under ./.data/redis when it runs and
// answers, else starts it. ours says whether this call started it.
func (s *Services) localRedis(ctx context.Context) (url string, ours bool, err error) {
	dir := s.data("redis")
	portFile, pidFile := filepath.Join(dir, "port"), filepath.Join(dir, "redis.pid")
	if pid := readPort(pidFile, 0); pid > 0 && Alive(pid) && isRedisServer(Cmdline(pid)) {
		url := fmt.Sprintf("redis://127.0.0.1:%d/0", readPort(portFile, 0))
		if RedisAnswers(ctx, url) {
			s.logf("redis: local redis-server already running at %s", url)
			return url, false, nil
		}
	}
	if _, err := s.redisServer(); err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	r, err := StartRedis(RedisOptions{
		Dir: dir, Port: readPort(portFile, s.RedisPort), Detach: true,
		Args: []string{"--appendonly", "yes"},
	})
	if err != nil {
		return "", false, err
	}
	s.logf("redis: started a local redis-server on %s (pid %d, data in %s)", r.Addr, r.Pid(), dir)
	err = errors.Join(
		os.WriteFile(pidFile, []byte(strconv.Itoa(r.Pid())+"\n"), 0o644),
		os.WriteFile(portFile, []byte(strconv.Itoa(r.Port)+"\n"), 0o644))
	return r.URL(0), true, err
}

// pgDir is the cluster's data directory: ./.data/pg, or where that
// symlink points (Postgres tools get the real path, since the symlink's
// parent may be closed to them).
func (s *Services) pgDir() string {
	d := s.data("pg")
	if real, err := filepath.EvalSymlinks(d); err == nil {
		return real
	}
	return d
}

func (s *Services) newPostgres() (*Postgres, error) {
	if _, err := s.postgresBinDir(); err != nil {
		return nil, err
	}
	return NewPostgres(PostgresOptions{Dir: s.pgDir(), Port: readPort(s.data("pg.port"), s.PostgresPort)})
}

// localPostgres reuses the cluster under ./.data/pg when it runs, else
// starts it, initdb'ing it first if there is none. ours says whether this
// call started it.
func (s *Services) localPostgres(ctx context.Context) (p *Postgres, ours bool, err error) {
	if p, err = s.newPostgres(); err != nil {
		return nil, false, err
	}
	if p.Running() {
		s.logf("postgres: local cluster already running on %s", p.Addr)
		return p, false, nil
	}
	if !p.Initialized() {
		// A symlinked cluster whose directory went (a cleaned /var/tmp)
		// starts again where the symlink points.
		if target, err := os.Readlink(s.data("pg")); err == nil && !exists(target) {
			if err := os.MkdirAll(target, 0o700); err != nil {
				return nil, false, err
			}
			if p, err = s.newPostgres(); err != nil {
				return nil, false, err
			}
		}
		if _, err := os.Lstat(s.data("pg")); errors.Is(err, os.ErrNotExist) && !p.canReach(s.data()) {
			alt := fmt.Sprintf("/var/tmp/stockgate-pg-%d", hash(s.data()))
			s.logf("postgres: the cluster's OS user cannot enter %s; keeping the cluster in %s (symlinked from .data/pg)", s.data(), alt)
			if err := os.MkdirAll(alt, 0o700); err != nil {
				return nil, false, err
			}
			if err := os.Symlink(alt, s.data("pg")); err != nil {
				return nil, false, err
			}
			if p, err = s.newPostgres(); err != nil {
				return nil, false, err
			}
		}
		s.logf("postgres: initdb %s (trust auth, loopback only)", p.Dir)
		if err := p.Init(); err != nil {
			return nil, false, err
		}
	}
	s.logf("postgres: starting the local cluster on %s (data in %s)", p.Addr, p.Dir)
	if err := p.Start(); err != nil {
		return nil, false, err
	}
	return p, true, os.WriteFile(s.data("pg.port"), []byte(strconv.Itoa(p.Port)+"\n"), 0o644)
}

func hash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// Down stops what runs under ./.data: "redis", "pg" and "compose" (the
// compose services Up started); all three when what is empty. A server
// that does not run is no error, and a system service is never touched.
func (s *Services) Down(ctx context.Context, what ...string) error {
	if err := s.validate(); err != nil {
		return err
	}
	if len(what) == 0 {
		what = []string{"redis", "pg", "compose"}
	}
	var errs []error
	for _, w := range what {
		switch w {
		case "redis":
			pid, err := StopPidFile(s.data("redis", "redis.pid"), isRedisServer, 10*time.Second)
			if errors.Is(err, ErrKilled) {
				s.logf("warning: redis-server %v", err)
				err = nil
			}
			if pid != 0 {
				s.logf("redis: stopped the local redis-server (pid %d)", pid)
			}
			errs = append(errs, err)
		case "pg":
			p, err := NewPostgres(PostgresOptions{Dir: s.pgDir()})
			if err != nil || !p.Running() {
				continue // without the binaries nothing of ours can run
			}
			s.logf("postgres: stopping the local cluster in %s", p.Dir)
			errs = append(errs, p.Stop())
		case "compose":
			errs = append(errs, s.composeDown(ctx))
		default:
			errs = append(errs, fmt.Errorf("down: unknown service %q (want redis, pg or compose)", w))
		}
	}
	return errors.Join(errs...)
}

// Status says, one line each, what runs under ./.data.
func (s *Services) Status(ctx context.Context) string {
	if err := s.validate(); err != nil {
		return err.Error()
	}
	var b strings.Builder
	if pid := readPort(s.data("redis", "redis.pid"), 0); pid > 0 && Alive(pid) && isRedisServer(Cmdline(pid)) {
		fmt.Fprintf(&b, "redis:    running (pid %d) on 127.0.0.1:%d\n", pid, readPort(s.data("redis", "port"), 0))
	} else {
		fmt.Fprintf(&b, "redis:    not running under %s\n", s.data("redis"))
	}
	if p, err := NewPostgres(PostgresOptions{Dir: s.pgDir()}); err == nil && p.Running() {
		fmt.Fprintf(&b, "postgres: running on %s (data in %s)\n", p.Addr, p.Dir)
	} else {
		fmt.Fprintf(&b, "postgres: not running under %s\n", s.data("pg"))
	}
	if svcs := s.composeStarted(); len(svcs) > 0 {
		fmt.Fprintf(&b, "compose:  started %s\n", strings.Join(svcs, " "))
	}
	return b.String()
}

// Clean stops everything, then deletes ./.data and, when ./.data/pg is a
// symlink Up made, the cluster it points to.
func (s *Services) Clean(ctx context.Context) error {
	if err := s.Down(ctx); err != nil {
		return err
	}
	if real := s.pgDir(); strings.HasPrefix(real, "/var/tmp/stockgate-pg-") {
		if err := os.RemoveAll(real); err != nil {
			return err
		}
	}
	return os.RemoveAll(s.data())
}
