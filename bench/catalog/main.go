// Command catalog is `make bench/catalog`: what a big catalogue costs on
// this machine (issue 15; docs/benchmarks.md, "Big catalogues"):
//
//   - stockctl import of -skus SKUs (a million by default), into an empty
//     catalogue and again over it: wall time, CPU and peak memory;
//   - Redis memory per stocked SKU (INFO memory, before and after);
//   - an idle worker: Redis commands per second, counted with INFO
//     commandstats, and the worker's CPU, while its first full pass over
//     the keys runs and then for -idle-seconds after it, with the
//     commands by name;
//   - GET /metrics: the slowest and the median of 20 scrapes;
//   - stockctl show, show --json, reconcile and reconcile --json: wall time
//     and peak memory, the maximum resident set size that /usr/bin/time -v
//     reports (the child's rusage).
//
// Everything runs against servers it starts itself on free ports, a
// redis-server with AOF (appendfsync everysec, noeviction) and a Postgres
// cluster made with initdb; it never touches the machine's shared Redis or
// Postgres.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/devsvc"
)

type config struct {
	skus          int
	idle          time.Duration
	sweepInterval time.Duration
	keep          bool
	bin           string
}

func main() {
	var c config
	fs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	fs.IntVar(&c.skus, "skus", 1_000_000, "SKUs in the catalogue")
	fs.DurationVar(&c.idle, "idle", time.Minute, "how long the idle worker's commands are counted once its first full pass is over")
	fs.DurationVar(&c.sweepInterval, "sweep-interval", 10*time.Second, "the worker's --sweep-interval (its default; the first full pass takes about 30 of them at a million SKUs)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, data) instead of removing it")
	fs.StringVar(&c.bin, "bin", "", "use the commands already built in this directory instead of building ./cmd/...")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if c.skus < 1000 {
		fmt.Fprintln(os.Stderr, "bench/catalog: -skus must be at least 1000")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "bench/catalog: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, stdout, stderr io.Writer) error {
	work, err := os.MkdirTemp("", "stockgate-bench-catalog-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintf(stderr, "bench: working directory %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	out := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }

	bin := c.bin
	if bin == "" {
		logf("building the commands")
		bin = filepath.Join(work, "bin")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cmd/...")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	e, err := startServices(ctx, work, logf)
	if err != nil {
		return err
	}
	defer e.stop()
	if _, err := e.command(ctx, bin, "stockctl", "migrate"); err != nil {
		return err
	}

	file := filepath.Join(work, "catalogue.csv")
	if err := writeCatalogue(file, c.skus); err != nil {
		return err
	}
	mem0, err := usedMemory(ctx, e.rdb)
	if err != nil {
		return err
	}
	out("catalogue: %d SKUs (%s)", c.skus, file)
	for _, pass := range []string{"into an empty catalogue", "again, over the same SKUs"} {
		logf("stockctl import, %s", pass)
		r, err := e.command(ctx, bin, "stockctl", "import", file)
		if err != nil {
			return err
		}
		out("import %-26s %6.1f s wall, %5.1f s CPU, peak RSS %4d MB   (%s)", pass+":", r.wall.Seconds(), r.cpu.Seconds(), r.maxRSS>>20, strings.TrimSpace(string(r.stdout)))
	}
	mem1, err := usedMemory(ctx, e.rdb)
	if err != nil {
		return err
	}
	out("redis memory: %d MB for %d SKUs, %d bytes per SKU (INFO memory used_memory, before and after)", (mem1-mem0)>>20, c.skus, (mem1-mem0)/int64(c.skus))

	// The idle worker, from its start: the first full pass, then idle.
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	calls0, err := commandStats(ctx, e.rdb)
	if err != nil {
		return err
	}
	w, err := e.startDaemon(ctx, "worker", filepath.Join(bin, "worker"), `"msg":"worker ready"`,
		"--admin-addr", admin, "--sweep-interval", c.sweepInterval.String(), "--log-level", "debug")
	if err != nil {
		return err
	}
	defer w.stop()
	started := time.Now()
	cpu0, err := cpuTimes(w.pid())
	if err != nil {
		return err
	}
	logf("waiting for the worker's first full pass over the keys (about %v)", time.Duration(float64(3*c.skus)/100_000)*c.sweepInterval)
	if err := w.waitLog(ctx, "full pass over the keys done", time.Hour); err != nil {
		return err
	}
	passed := time.Since(started)
	calls1, err := commandStats(ctx, e.rdb)
	if err != nil {
		return err
	}
	cpu1, err := cpuTimes(w.pid())
	if err != nil {
		return err
	}
	out("idle worker, first full pass (%.0f s): %5.1f Redis commands/s, %.2f%% of a core", passed.Seconds(),
		float64(calls1.total()-calls0.total())/passed.Seconds(), 100*(cpu1-cpu0).Seconds()/passed.Seconds())
	logf("counting the idle worker's commands for %v", c.idle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.idle):
	}
	calls2, err := commandStats(ctx, e.rdb)
	if err != nil {
		return err
	}
	cpu2, err := cpuTimes(w.pid())
	if err != nil {
		return err
	}
	out("idle worker, after it (%.0f s):     %5.1f Redis commands/s, %.2f%% of a core; by command: %s", c.idle.Seconds(),
		float64(calls2.total()-calls1.total())/c.idle.Seconds(), 100*(cpu2-cpu1).Seconds()/c.idle.Seconds(), calls2.minus(calls1).top(12))

	var scrapes []time.Duration
	for range 20 {
		t0 := time.Now()
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		scrapes = append(scrapes, time.Since(t0))
	}
	slices.Sort(scrapes)
	out("GET /metrics: median %v, slowest %v of 20", scrapes[len(scrapes)/2].Round(10*time.Microsecond), scrapes[len(scrapes)-1].Round(10*time.Microsecond))

	for _, args := range [][]string{{"show"}, {"show", "--json"}, {"reconcile"}, {"reconcile", "--json"}} {
		logf("stockctl %s", strings.Join(args, " "))
		r, err := e.command(ctx, bin, "stockctl", args...)
		if err != nil {
			return err
		}
		out("stockctl %-17s %6.1f s wall, %5.1f s CPU, peak RSS %4d MB, %d lines out", strings.Join(args, " ")+":", r.wall.Seconds(), r.cpu.Seconds(), r.maxRSS>>20, r.lines)
	}
	return nil
}

func writeCatalogue(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "sku,qty")
	for i := range n {
		fmt.Fprintf(w, "SKU-%07d,%d\n", i, 100+i%900)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// env is the private Redis and Postgres of one run.
type env struct {
	work  string
	redis *devsvc.Redis
	pg    *devsvc.Postgres
	rdb   *redis.Client
	vars  []string
}

func startServices(ctx context.Context, work string, logf func(string, ...any)) (*env, error) {
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
		"--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
	}})
	if err != nil {
		return nil, err
	}
	logf("redis-server on %s (AOF, appendfsync everysec)", e.redis.Addr)
	e.pg, err = devsvc.NewPostgres(devsvc.PostgresOptions{Dir: filepath.Join(work, "pg")})
	if err == nil {
		err = e.pg.Init()
	}
	if err == nil {
		err = e.pg.Start()
	}
	if err != nil {
		e.stop()
		return nil, fmt.Errorf("private postgres: %w", err)
	}
	logf("postgres on %s (initdb, synchronous_commit on)", e.pg.Addr)
	dbURL, err := devsvc.EnsureDatabase(ctx, e.pg.URL("postgres"), "stockgate")
	if err != nil {
		e.stop()
		return nil, err
	}
	e.rdb = e.redis.Client(0)
	e.vars = append(os.Environ(), "REDIS_URL="+e.redis.URL(0), "DATABASE_URL="+dbURL, "OTEL_TRACES_EXPORTER=none")
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

// ran is one finished command: its wall time, CPU and peak memory (its
// rusage, as /usr/bin/time -v reads it), and its output's line count.
type ran struct {
	stdout []byte
	lines  int
	wall   time.Duration
	cpu    time.Duration
	maxRSS int64 // bytes
}

func (e *env) command(ctx context.Context, bin, name string, args ...string) (ran, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Env = e.vars
	var errOut strings.Builder
	cmd.Stderr = &errOut
	pr, err := cmd.StdoutPipe()
	if err != nil {
		return ran{}, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return ran{}, err
	}
	// Only the output's last line and its count are kept: a million rows
	// held here would be the memory the command was spared.
	var r ran
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last string
	for sc.Scan() {
		r.lines++
		last = sc.Text()
	}
	err = cmd.Wait()
	r.wall = time.Since(t0)
	r.stdout = []byte(last)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && name == "stockctl" && args[0] == "reconcile" && exit.ExitCode() == 1) {
		return r, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	return r, nil
}

// daemon is the worker.
type daemon struct {
	cmd *exec.Cmd
	log string
}

func (e *env) startDaemon(ctx context.Context, name, path, ready string, args ...string) (*daemon, error) {
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
	go func() { _ = cmd.Wait() }()
	return d, d.waitLog(ctx, ready, 30*time.Second)
}

// waitLog waits until the daemon's log has want.
func (d *daemon) waitLog(ctx context.Context, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(d.log)
		if strings.Contains(string(b), want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%q not in %s after %v", want, d.log, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

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

// stats are INFO commandstats' calls per command, INFO itself left out
// (the benchmark's own).
type stats map[string]int64

func commandStats(ctx context.Context, rdb *redis.Client) (stats, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := stats{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out, nil
}

func (s stats) total() int64 {
	var n int64
	for _, v := range s {
		n += v
	}
	return n
}

func (s stats) minus(o stats) stats {
	out := stats{}
	for k, v := range s {
		if d := v - o[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// top is the n commands run most, as "name count".
func (s stats) top(n int) string {
	names := slices.SortedFunc(func(yield func(string) bool) {
		for k := range s {
			if !yield(k) {
				return
			}
		}
	}, func(a, b string) int { return int(s[b] - s[a]) })
	var parts []string
	for _, k := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %d", k, s[k]))
	}
	return strings.Join(parts, ", ")
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// cpuTimes reads a process's user and system time from /proc/PID/stat.
func cpuTimes(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond, nil // USER_HZ is 100
}

func freeAddr() (string, error) {
	p, err := devsvc.FreePort(0)
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}
