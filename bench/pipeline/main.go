// Command pipeline is `make bench/pipeline`: the whole stockgate pipeline
// measured against the two designs it has to beat, in one run on this
// machine, with the ratios between them:
//
//   - postgres-only: pgbench running, per order, one transaction that
//     decrements a hot row (UPDATE … WHERE stock >= 1) and inserts the order
//     (bench/postgres-only.sql);
//   - asynq no-op: the worker's own Asynq servers (same dequeue loops,
//     concurrency and poll interval) with a handler that does nothing, fed
//     by the same `enqueue flash-sale` path: the ceiling of the queue alone;
//   - the pipeline: `enqueue flash-sale --wait --json` against the real
//     worker, with stock for every buyer, so every order confirms; then the
//     same again offered at half the measured peak with --rate, for the
//     latency a checkout would see.
//
// It prints orders/s, latency, and the CPU each order costs in every process
// (worker, redis-server, the Postgres server with its backends, enqueue),
// read from /proc and from the children's rusage.
//
// With -api (make bench/api) it measures the storefront HTTP API instead:
// wrk POSTing unique orders to cmd/api (bench/api/post.lua) next to
// enqueue flash-sale through the Go client, with no worker running, and
// what 2,000 held long-polls cost the API and Postgres (api.go).
//
// Everything runs against servers it starts itself on free ports: a
// redis-server with AOF (appendfsync from -appendfsync) and a Postgres
// cluster made with initdb, with pg_stat_statements loaded (-profile prints
// its top statements and Redis's command stats for the pipeline run). It
// never touches the machine's shared Redis or Postgres.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type benchConfig struct {
	buyers       int
	rateBuyers   int
	pgSeconds    int
	concurrency  int
	loops        int
	enqueueConc  int
	appendfsync  string
	profile      bool
	cpuProfile   string
	keep         bool
	pollInterval time.Duration
	bin          string
	api          bool
	apiSeconds   int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "noop-worker" {
		os.Exit(noopWorker(os.Args[2:]))
	}
	var c benchConfig
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.IntVar(&c.buyers, "buyers", 20000, "orders in the peak run (and tasks in the no-op run)")
	fs.IntVar(&c.rateBuyers, "rate-buyers", 0, "orders in the half-load run (default: 15 seconds of the offered rate, at least 2000)")
	fs.IntVar(&c.pgSeconds, "pgbench-seconds", 20, "how long pgbench runs the Postgres-only design")
	fs.IntVar(&c.concurrency, "concurrency", 64, "the worker's --concurrency, and the no-op server's")
	fs.IntVar(&c.loops, "dequeue-loops", 0, "the worker's --dequeue-loops, and the no-op server's (default: the worker's default)")
	fs.IntVar(&c.enqueueConc, "enqueue-concurrency", 32, "enqueue flash-sale --concurrency")
	fs.StringVar(&c.appendfsync, "appendfsync", cmp.Or(os.Getenv("APPENDFSYNC"), "everysec"), "Redis appendfsync: always, everysec or no [APPENDFSYNC]")
	fs.DurationVar(&c.pollInterval, "poll-interval", 0, "the worker's --poll-interval (default: the worker's default)")
	fs.BoolVar(&c.profile, "profile", false, "also print pg_stat_statements' top statements and Redis INFO commandstats for the pipeline run")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the worker during the peak run to this file (go tool pprof)")
	fs.StringVar(&c.bin, "bin", "", "use the worker, enqueue and stockctl already built in this directory (e.g. an older version's, to compare) instead of building ./cmd/...")
	fs.BoolVar(&c.api, "api", false, "measure the storefront HTTP API instead (make bench/api): wrk POSTing to cmd/api against enqueue flash-sale through the Go client, and the cost of held long-polls")
	fs.IntVar(&c.apiSeconds, "api-seconds", 20, "with -api, how long wrk runs")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, data) instead of removing it")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	switch {
	case c.buyers < 1000:
		fmt.Fprintln(os.Stderr, "bench/pipeline: -buyers must be at least 1000")
		os.Exit(2)
	case c.appendfsync != "always" && c.appendfsync != "everysec" && c.appendfsync != "no":
		fmt.Fprintf(os.Stderr, "bench/pipeline: -appendfsync %q: want always, everysec or no\n", c.appendfsync)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "bench/pipeline: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c benchConfig, stdout, stderr io.Writer) error {
	work, err := os.MkdirTemp("", "stockgate-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintf(stderr, "bench: working directory %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }

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

	env, err := startServices(ctx, work, c, logf)
	if err != nil {
		return err
	}
	defer env.stop()

	if c.api {
		res, err := env.httpAPI(ctx, bin, c, logf)
		if err != nil {
			return fmt.Errorf("http api: %w", err)
		}
		res.print(stdout)
		return nil
	}
	res := results{cfg: c}
	if res.noop, err = env.noopCeiling(ctx, bin, c, logf); err != nil {
		return fmt.Errorf("asynq no-op: %w", err)
	}
	if res.peak, res.rate, err = env.pipeline(ctx, bin, c, logf); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	if c.profile {
		res.profile = env.profile(ctx)
	}
	if res.pg, err = env.pgbench(ctx, c, logf); err != nil {
		return fmt.Errorf("postgres-only: %w", err)
	}
	res.print(stdout)
	return nil
}
