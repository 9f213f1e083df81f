package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one run measured.
type results struct {
	cfg     benchConfig
	noop    measured // asynq no-op: tasks/s and CPU per task
	peak    measured // the pipeline at full speed
	rate    measured // the pipeline offered half the peak
	pg      measured // pgbench: the Postgres-only design
	profile string
}

// The targets of the pipeline benchmark (docs/benchmarks.md).
const (
	targetVsPostgres = 4.0
	targetVsNoop     = 0.5
	targetP99        = 50.0 // ms, at half the peak
	targetP50        = 15.0 // ms, at half the peak
	targetCPUVsNoop  = 2.5
)

func (r results) print(w io.Writer) {
	peak, noop, pg := r.peak.perSec(), r.noop.perSec(), r.pg.perSec()
	loops := "the worker's default"
	if r.cfg.loops > 0 {
		loops = fmt.Sprint(r.cfg.loops)
	}
	fmt.Fprintf(w, "\nstockgate pipeline benchmark: appendfsync %s, worker --concurrency %d, dequeue loops %s, %d buyers, enqueue --concurrency %d\n\n",
		r.cfg.appendfsync, r.cfg.concurrency, loops, r.cfg.buyers, r.cfg.enqueueConc)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "design\torders/s\tvs postgres-only\tvs asynq no-op\t")
	fmt.Fprintf(tw, "postgres-only (pgbench -c 32)\t%.0f\t1.00x\t%.2f\t\n", pg, pg/noop)
	fmt.Fprintf(tw, "asynq no-op (same servers, same enqueue)\t%.0f\t%.2fx\t1.00\t\n", noop, noop/pg)
	fmt.Fprintf(tw, "stockgate pipeline\t%.0f\t%.2fx\t%.2f\t\n", peak, peak/pg, peak/noop)
	_ = tw.Flush()

	l := r.rate.sum.LatencyMS
	if r.rate.orders > 0 {
		fmt.Fprintf(w, "\nlatency placed_at -> decided_at, %d orders offered at %.0f/s (half the peak): p50 %.1f ms, p95 %.1f ms, p99 %.1f ms\n",
			r.rate.orders, r.rate.sum.OrdersPerSec, l.P50, l.P95, l.P99)
	} else {
		fmt.Fprintln(w, "\nlatency at half the peak: not measured (this enqueue has no --rate)")
	}
	pl := r.peak.sum.LatencyMS
	fmt.Fprintf(w, "latency at the peak (a burst, so mostly queueing): p50 %.0f ms, p99 %.0f ms\n\n", pl.P50, pl.P99)

	us := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond))
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CPU µs per order\tworker\tredis\tpostgres\tenqueue\tpgbench\ttotal\tvs no-op\t")
	row := func(name string, m measured) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2fx\t\n", name, us(m.perOrder("worker")), us(m.perOrder("redis")),
			us(m.perOrder("postgres")), us(m.perOrder("enqueue")), us(m.perOrder("pgbench")), us(m.perOrder("")),
			float64(m.perOrder(""))/float64(r.noop.perOrder("")))
	}
	row("asynq no-op", r.noop)
	row("stockgate pipeline, peak", r.peak)
	if r.rate.orders > 0 {
		row("stockgate pipeline, half load", r.rate)
	}
	row("postgres-only", r.pg)
	_ = tw.Flush()

	fmt.Fprintln(w, "\ntargets:")
	check := func(ok bool, format string, args ...any) {
		mark := "met   "
		if !ok {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	check(peak >= targetVsPostgres*pg, "pipeline >= %.0fx postgres-only: %.2fx", targetVsPostgres, peak/pg)
	check(peak >= targetVsNoop*noop, "pipeline >= %.0f%% of asynq no-op: %.0f%%", 100*targetVsNoop, 100*peak/noop)
	if r.rate.orders > 0 {
		check(l.P99 <= targetP99 && l.P50 <= targetP50, "at half load p99 <= %.0f ms and p50 <= %.0f ms: p99 %.1f ms, p50 %.1f ms",
			targetP99, targetP50, l.P99, l.P50)
	} else {
		// An older enqueue (-bin) has no --rate: say so rather than report 0 ms as missed.
		fmt.Fprintf(w, "  -      at half load p99 <= %.0f ms and p50 <= %.0f ms: not measured\n", targetP99, targetP50)
	}
	ratio := float64(r.peak.perOrder("")) / float64(r.noop.perOrder(""))
	check(ratio <= targetCPUVsNoop, "CPU per order <= %.1fx asynq no-op's: %.2fx", targetCPUVsNoop, ratio)
	if r.profile != "" {
		fmt.Fprintln(w)
		fmt.Fprint(w, strings.TrimRight(r.profile, "\n")+"\n")
	}
}
