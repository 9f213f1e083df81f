package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/devsvc"
	"github.com/stockgate/stockgate/internal/orders"
)

// env is the private Redis and Postgres of one benchmark run.
type env struct {
	work  string
	redis *devsvc.Redis
	pg    *devsvc.Postgres
	rdb   *redis.Client
	dbURL string
	vars  []string // REDIS_URL and DATABASE_URL for the commands
}

func startServices(ctx context.Context, work string, c benchConfig, logf func(string, ...any)) (*env, error) {
	e := &env{work: work}
	// The Postgres server runs as the postgres user when we are root, and
	// must reach its data directory below work.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(work, "redis"), 0o755); err != nil {
		return nil, err
	}
	var err error
	e.redis, err = devsvc.StartRedis(devsvc.RedisOptions{Dir: filepath.Join(work, "redis"), Args: []string{
		"--appendonly", "yes", "--appendfsync", c.appendfsync, "--maxmemory-policy", "noeviction",
	}})
	if err != nil {
		return nil, err
	}
	logf("redis-server on %s (AOF, appendfsync %s)", e.redis.Addr, c.appendfsync)
	e.pg, err = devsvc.NewPostgres(devsvc.PostgresOptions{Dir: filepath.Join(work, "pg")})
	if err == nil {
		err = e.pg.Init()
	}
	if err == nil {
		// pg_stat_statements, for -profile and for whoever reads the kept
		// directory; it costs a little on every statement, in both designs.
		err = appendFile(filepath.Join(e.pg.Dir, "postgresql.conf"),
			"\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
	}
	if err == nil {
		err = e.pg.Start()
	}
	if err != nil {
		e.stop()
		return nil, fmt.Errorf("private postgres: %w", err)
	}
	logf("postgres on %s (initdb, synchronous_commit on)", e.pg.Addr)
	if e.dbURL, err = devsvc.EnsureDatabase(ctx, e.pg.URL("postgres"), "stockgate"); err != nil {
		e.stop()
		return nil, err
	}
	if err := e.sql(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		e.stop()
		return nil, err
	}
	e.rdb = e.redis.Client(0)
	e.vars = append(os.Environ(), "REDIS_URL="+e.redis.URL(0), "DATABASE_URL="+e.dbURL, "OTEL_TRACES_EXPORTER=none")
	return e, nil
}

func (e *env) stop() {
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
	if e.pg != nil {
		_ = e.pg.Stop()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
}

func (e *env) sql(ctx context.Context, stmt string, args ...any) error {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt, args...)
	return err
}

func (e *env) postmasterPid() (int, error) {
	b, err := os.ReadFile(filepath.Join(e.pg.Dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// meter samples the long-running processes of a run: redis-server, the
// Postgres server, and the worker (or the no-op server) when pid > 0.
func (e *env) meter(workerPid int) (meter, error) {
	pm, err := e.postmasterPid()
	if err != nil {
		return meter{}, err
	}
	m := meter{procs: map[string]func() (time.Duration, error){
		"redis":    func() (time.Duration, error) { return cpuTimes(e.redis.Pid(), false) },
		"postgres": func() (time.Duration, error) { return treeCPU(pm) },
	}}
	if workerPid > 0 {
		m.procs["worker"] = func() (time.Duration, error) { return cpuTimes(workerPid, false) }
	}
	return m, nil
}

// daemon is a long-running child: the worker or the no-op server.
type daemon struct {
	cmd *exec.Cmd
	log string
}

// startDaemon runs path with args and waits until its log shows ready.
func (e *env) startDaemon(ctx context.Context, name, path string, ready string, args ...string) (*daemon, error) {
	logPath := filepath.Join(e.work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = e.vars
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	d := &daemon{cmd: cmd, log: logPath}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), ready) {
			go func() { <-exited }()
			return d, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v): %s", name, err, lastLines(b, 5))
		case <-deadline:
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("%s not ready after 30s: %s", name, lastLines(b, 5))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and waits for the drain.
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	for range 300 {
		if err := d.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = d.cmd.Process.Kill()
}

// ran is one finished command: its output and its CPU (rusage).
type ran struct {
	stdout []byte
	cpu    time.Duration
	wall   time.Duration
}

func (e *env) runCmd(ctx context.Context, path string, args ...string) (ran, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = e.vars
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	r := ran{stdout: out, wall: time.Since(start)}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, lastLines([]byte(stderr.String()), 3))
	}
	return r, nil
}

// summary is enqueue flash-sale --json's output (a contract).
type summary struct {
	Enqueued     int     `json:"enqueued"`
	Confirmed    int     `json:"confirmed"`
	Rejected     int     `json:"rejected"`
	Failed       int     `json:"failed"`
	Expired      int     `json:"expired"`
	Seconds      float64 `json:"seconds"`
	OrdersPerSec float64 `json:"orders_per_sec"`
	LatencyMS    struct {
		P50 float64 `json:"p50"`
		P95 float64 `json:"p95"`
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
}

// measured is one timed run: its throughput, latency and CPU per order in
// every process.
type measured struct {
	orders  int
	seconds float64
	sum     summary
	cpu     map[string]time.Duration // per process, whole run
}

func (m measured) perSec() float64 { return float64(m.orders) / m.seconds }

// perOrder is the CPU one order cost in a process, and in all of them.
func (m measured) perOrder(proc string) time.Duration {
	if m.orders == 0 {
		return 0
	}
	if proc == "" {
		var t time.Duration
		for _, v := range m.cpu {
			t += v
		}
		return t / time.Duration(m.orders)
	}
	return m.cpu[proc] / time.Duration(m.orders)
}

// noopCeiling runs the worker's Asynq servers with a no-op handler and
// feeds them through enqueue flash-sale, as the pipeline run is fed.
func (e *env) noopCeiling(ctx context.Context, bin string, c benchConfig, logf func(string, ...any)) (measured, error) {
	self, err := os.Executable()
	if err != nil {
		return measured{}, err
	}
	args := []string{"noop-worker", "--concurrency", strconv.Itoa(c.concurrency)}
	if c.loops > 0 {
		args = append(args, "--dequeue-loops", strconv.Itoa(c.loops))
	}
	if c.pollInterval > 0 {
		args = append(args, "--poll-interval", c.pollInterval.String())
	}
	d, err := e.startDaemon(ctx, "noop-worker", self, "noop ready", args...)
	if err != nil {
		return measured{}, err
	}
	defer d.stop()
	enqueue := filepath.Join(bin, "enqueue")
	sale := func(n int) (ran, time.Duration, error) {
		before := e.completed(ctx)
		start := time.Now()
		r, err := e.runCmd(ctx, enqueue, "flash-sale", "--sku", "NOOP-SKU", "--buyers", strconv.Itoa(n),
			"--concurrency", strconv.Itoa(c.enqueueConc), "--json")
		if err != nil {
			return r, 0, err
		}
		for e.completed(ctx) < before+n {
			if time.Since(start) > 10*time.Minute {
				return r, 0, fmt.Errorf("no-op server processed %d of %d tasks in 10m", e.completed(ctx)-before, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return r, time.Since(start), nil
	}
	logf("asynq no-op: warm-up")
	if _, _, err := sale(500); err != nil {
		return measured{}, err
	}
	m, err := e.meter(d.pid())
	if err != nil {
		return measured{}, err
	}
	logf("asynq no-op: %d tasks", c.buyers)
	before, err := m.sample()
	if err != nil {
		return measured{}, err
	}
	r, wall, err := sale(c.buyers)
	if err != nil {
		return measured{}, err
	}
	after, err := m.sample()
	if err != nil {
		return measured{}, err
	}
	cpu := delta(before, after)
	cpu["enqueue"] = r.cpu
	cpu["postgres"] = 0 // idle: nothing in the no-op run touches it
	return measured{orders: c.buyers, seconds: wall.Seconds(), cpu: cpu}, nil
}

// completed counts the tasks the no-op server finished: they stay in
// Asynq's completed set for their retention. One ZCARD, where the
// Inspector's queue info would sample the queue's memory on every poll and
// load the Redis being measured.
func (e *env) completed(ctx context.Context) int {
	return int(e.rdb.ZCard(ctx, "asynq:{"+orders.Queue+"}:completed").Val())
}

// pipeline runs the real worker at its peak, then at half of it.
func (e *env) pipeline(ctx context.Context, bin string, c benchConfig, logf func(string, ...any)) (peak, half measured, err error) {
	// The no-op run's tasks and their retention go; the stock starts fresh.
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return peak, half, err
	}
	stockctl, enqueue := filepath.Join(bin, "stockctl"), filepath.Join(bin, "enqueue")
	if _, err := e.runCmd(ctx, stockctl, "migrate"); err != nil {
		return peak, half, err
	}
	if _, err := e.runCmd(ctx, stockctl, "set", "BENCH-SKU", strconv.Itoa(100*c.buyers)); err != nil {
		return peak, half, err
	}
	admin := "127.0.0.1:0"
	if c.cpuProfile != "" {
		port, err := devsvc.FreePort(0)
		if err != nil {
			return peak, half, err
		}
		admin = "127.0.0.1:" + strconv.Itoa(port)
	}
	args := []string{"--admin-addr", admin, "--concurrency", strconv.Itoa(c.concurrency)}
	if c.cpuProfile != "" {
		args = append(args, "--pprof")
	}
	if c.loops > 0 {
		args = append(args, "--dequeue-loops", strconv.Itoa(c.loops))
	}
	if c.pollInterval > 0 {
		args = append(args, "--poll-interval", c.pollInterval.String())
	}
	w, err := e.startDaemon(ctx, "worker", filepath.Join(bin, "worker"), `"worker ready"`, args...)
	if err != nil {
		return peak, half, err
	}
	defer w.stop()
	m, err := e.meter(w.pid())
	if err != nil {
		return peak, half, err
	}
	sale := func(n int, extra ...string) (measured, error) {
		before, err := m.sample()
		if err != nil {
			return measured{}, err
		}
		args := append([]string{"flash-sale", "--sku", "BENCH-SKU", "--buyers", strconv.Itoa(n),
			"--concurrency", strconv.Itoa(c.enqueueConc), "--wait", "--json"}, extra...)
		r, err := e.runCmd(ctx, enqueue, args...)
		if err != nil {
			return measured{}, err
		}
		after, err := m.sample()
		if err != nil {
			return measured{}, err
		}
		var s summary
		if err := json.Unmarshal(r.stdout, &s); err != nil {
			return measured{}, fmt.Errorf("flash-sale --json: %w: %q", err, r.stdout)
		}
		if s.Confirmed != n {
			return measured{}, fmt.Errorf("flash-sale: %d of %d orders confirmed (stock is there for all): %+v", s.Confirmed, n, s)
		}
		cpu := delta(before, after)
		cpu["enqueue"] = r.cpu
		return measured{orders: s.Confirmed, seconds: s.Seconds, sum: s, cpu: cpu}, nil
	}
	logf("pipeline: warm-up")
	if _, err := sale(500); err != nil {
		return peak, half, err
	}
	if err := e.sql(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return peak, half, err
	}
	if err := e.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return peak, half, err
	}
	logf("pipeline: peak, %d orders", c.buyers)
	var profiled chan error
	if c.cpuProfile != "" {
		profiled = make(chan error, 1)
		go func() { profiled <- fetchProfile(ctx, "http://"+admin+"/debug/pprof/profile?seconds=4", c.cpuProfile) }()
	}
	if peak, err = sale(c.buyers); err != nil {
		return peak, half, err
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return peak, half, fmt.Errorf("cpu profile: %w", err)
		}
		logf("worker CPU profile of the peak run's first 4s in %s", c.cpuProfile)
	}
	rate := max(int(peak.perSec()/2), 1)
	n := cmp.Or(c.rateBuyers, max(2000, 15*rate))
	logf("pipeline: %d orders offered at %d/s (half the peak)", n, rate)
	half, err = sale(n, "--rate", strconv.Itoa(rate))
	switch {
	case err == nil:
		half.sum.OrdersPerSec = float64(rate) // what was offered, for the table
	case strings.Contains(err.Error(), "not defined: -rate"):
		// An enqueue from before --rate (a -bin of an older version).
		logf("pipeline: this enqueue has no --rate; no half-load run")
		half, err = measured{}, nil
	}
	if _, rerr := e.runCmd(ctx, stockctl, "reconcile"); rerr != nil && err == nil {
		err = fmt.Errorf("reconcile found drift after the runs: %w", rerr)
	}
	return peak, half, err
}

// pgbench runs the Postgres-only design on the same Postgres server.
func (e *env) pgbench(ctx context.Context, c benchConfig, logf func(string, ...any)) (measured, error) {
	setup, err := os.ReadFile("bench/postgres-only-setup.sql")
	if err != nil {
		return measured{}, err
	}
	if err := e.sql(ctx, "SET client_min_messages = warning; "+string(setup)); err != nil {
		return measured{}, fmt.Errorf("postgres-only setup: %w", err)
	}
	binDir, err := devsvc.PostgresBinDir()
	if err != nil {
		return measured{}, err
	}
	m, err := e.meter(0)
	if err != nil {
		return measured{}, err
	}
	before, err := m.sample()
	if err != nil {
		return measured{}, err
	}
	logf("postgres-only: pgbench -c 32 for %ds", c.pgSeconds)
	r, err := e.runCmd(ctx, filepath.Join(binDir, "pgbench"), "-n", "-c", "32", "-j", "2", "-T", strconv.Itoa(c.pgSeconds),
		"-M", "prepared", "-f", "bench/postgres-only.sql", e.dbURL)
	if err != nil {
		return measured{}, err
	}
	after, err := m.sample()
	if err != nil {
		return measured{}, err
	}
	tx := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(r.stdout)
	tps := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(r.stdout)
	if tx == nil || tps == nil {
		return measured{}, fmt.Errorf("pgbench printed no tps: %s", lastLines(r.stdout, 5))
	}
	n, _ := strconv.Atoi(string(tx[1]))
	rate, _ := strconv.ParseFloat(string(tps[1]), 64)
	cpu := delta(before, after)
	delete(cpu, "redis")
	cpu["pgbench"] = r.cpu
	return measured{orders: n, seconds: float64(n) / rate, cpu: cpu}, nil
}

// profile is what -profile prints: where the pipeline run's database and
// Redis time went.
func (e *env) profile(ctx context.Context) string {
	var b strings.Builder
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err == nil {
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `
			SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / greatest(calls, 1) * 1000)::numeric, 1),
				rows, left(regexp_replace(query, '\s+', ' ', 'g'), 100)
			FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			ORDER BY total_exec_time DESC LIMIT 8`)
		if err == nil {
			fmt.Fprintf(&b, "pg_stat_statements, pipeline peak run (calls, total ms, µs/call, rows, query):\n")
			for rows.Next() {
				var calls, nrows int64
				var total, per float64
				var q string
				if rows.Scan(&calls, &total, &per, &nrows, &q) == nil {
					fmt.Fprintf(&b, "  %8d %10.1f %8.1f %8d  %s\n", calls, total, per, nrows, q)
				}
			}
			rows.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(&b, "pg_stat_statements: %v\n", err)
	}
	info, err := e.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		fmt.Fprintf(&b, "redis commandstats: %v\n", err)
		return b.String()
	}
	fmt.Fprintf(&b, "redis INFO commandstats since the peak run began (calls, usec, usec/call):\n")
	re := regexp.MustCompile(`^cmdstat_(\w+[|\w]*):calls=(\d+),usec=(\d+),usec_per_call=([0-9.]+)`)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if m := re.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			fmt.Fprintf(&b, "  %-22s %10s %10s %8s\n", m[1], m[2], m[3], m[4])
		}
	}
	return b.String()
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}
