package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// wrkResult is the JSON line bench/api/post.lua prints when wrk is done.
type wrkResult struct {
	Requests     int     `json:"requests"`
	Non2xx       int     `json:"non2xx"`
	SocketErrors int     `json:"socket_errors"`
	Seconds      float64 `json:"seconds"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
}

// apiResult is make bench/api's measurement.
type apiResult struct {
	direct     summary   // enqueue flash-sale through the Go client, no --wait
	wrk        wrkResult // POST /v1/orders through the API
	apiCPU     time.Duration
	waiters    int
	waitSecs   float64
	waitCPU    time.Duration // the API's CPU while the long-polls were held
	waitXacts  int64         // Postgres transactions meanwhile
	pollTicks  float64       // seconds / poll interval
	connection int
}

// httpAPI measures the storefront API against the Go client it is built
// on, in one run, with no worker running (so both measure the enqueue path
// alone): first enqueue flash-sale through the client, then wrk POSTing
// unique orders to the API, then long-polls held on pending orders, to
// count what the shared poller costs Postgres.
func (e *env) httpAPI(ctx context.Context, bin string, c benchConfig, logf func(string, ...any)) (apiResult, error) {
	var res apiResult
	res.connection = c.enqueueConc
	if _, err := e.runCmd(ctx, filepath.Join(bin, "stockctl"), "migrate"); err != nil {
		return res, err
	}
	logf("Go client: enqueue flash-sale --buyers %d --concurrency %d (no worker)", c.buyers, c.enqueueConc)
	r, err := e.runCmd(ctx, filepath.Join(bin, "enqueue"), "flash-sale", "--sku", "BENCH-API", "--buyers", strconv.Itoa(c.buyers),
		"--concurrency", strconv.Itoa(c.enqueueConc), "--run", "direct", "--json")
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(r.stdout, &res.direct); err != nil {
		return res, fmt.Errorf("enqueue --json: %w", err)
	}
	logf("  %.0f orders/s", res.direct.OrdersPerSec)

	port, err := devsvc.FreePort(0)
	if err != nil {
		return res, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	api, err := e.startDaemon(ctx, "api", filepath.Join(bin, "api"), `"api ready"`, "--addr", addr)
	if err != nil {
		return res, err
	}
	defer api.stop()
	before, err := cpuTimes(api.pid(), false)
	if err != nil {
		return res, err
	}
	logf("API: wrk -t2 -c%d -d%ds -s bench/api/post.lua http://%s/v1/orders (no worker)", c.enqueueConc, c.apiSeconds, addr)
	wrk := exec.CommandContext(ctx, "wrk", "-t2", fmt.Sprintf("-c%d", c.enqueueConc), fmt.Sprintf("-d%ds", c.apiSeconds),
		"-s", "bench/api/post.lua", "http://"+addr+"/v1/orders")
	wrk.Env = append(e.vars, "RUN=wrk", "SKU=BENCH-API")
	out, err := wrk.Output()
	if err != nil {
		return res, fmt.Errorf("wrk: %w (make bench/api installs it): %s", err, out)
	}
	if err := json.Unmarshal(lastJSONLine(out), &res.wrk); err != nil {
		return res, fmt.Errorf("wrk output %q: %w", out, err)
	}
	after, err := cpuTimes(api.pid(), false)
	if err != nil {
		return res, err
	}
	res.apiCPU = after - before
	accepted := res.wrk.Requests - res.wrk.Non2xx
	logf("  %.0f accepted orders/s, p99 %.1f ms, %d refused", float64(accepted)/res.wrk.Seconds, res.wrk.P99MS, res.wrk.Non2xx)

	// Long-polls on pending orders (no worker decides them): what do they
	// cost the API and Postgres while held?
	res.waiters, res.waitSecs = 2000, 10
	logf("API: %d long-polls ?wait=30s held for %.0fs", res.waiters, res.waitSecs)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: res.waiters, MaxConnsPerHost: 0}}
	var wg sync.WaitGroup
	for i := range res.waiters {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(wctx, "GET", fmt.Sprintf("http://%s/v1/orders/direct-%d?wait=30s", addr, i+1), nil)
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	time.Sleep(3 * time.Second) // every request has done its first Status and waits
	x0, err := e.xacts(ctx)
	if err != nil {
		return res, err
	}
	c0, _ := cpuTimes(api.pid(), false)
	time.Sleep(time.Duration(res.waitSecs * float64(time.Second)))
	c1, _ := cpuTimes(api.pid(), false)
	x1, err := e.xacts(ctx)
	if err != nil {
		return res, err
	}
	cancel()
	wg.Wait()
	res.waitCPU, res.waitXacts = c1-c0, x1-x0-1 // the second read counts itself
	res.pollTicks = res.waitSecs / 0.1
	logf("  API CPU %v, %d Postgres transactions (%.0f poll ticks)", res.waitCPU.Round(time.Millisecond), res.waitXacts, res.pollTicks)
	return res, nil
}

// xacts is the committed transactions of the benchmark's database so far.
func (e *env) xacts(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}

func lastJSONLine(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if len(lines[i]) > 0 && lines[i][0] == '{' {
			return lines[i]
		}
	}
	return nil
}

func (r apiResult) print(w io.Writer) {
	accepted := r.wrk.Requests - r.wrk.Non2xx
	perSec := float64(accepted) / r.wrk.Seconds
	fmt.Fprintf(w, "\nHTTP API (no worker running; %d connections or goroutines each)\n", r.connection)
	fmt.Fprintf(w, "  Go client, enqueue flash-sale:  %8.0f orders/s (%d orders)\n", r.direct.OrdersPerSec, r.direct.Enqueued)
	fmt.Fprintf(w, "  API, wrk POST /v1/orders:       %8.0f accepted orders/s (%d in %.1fs, %d refused, %d socket errors)\n",
		perSec, accepted, r.wrk.Seconds, r.wrk.Non2xx, r.wrk.SocketErrors)
	fmt.Fprintf(w, "  API latency:                    p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", r.wrk.P50MS, r.wrk.P99MS, r.wrk.MaxMS)
	fmt.Fprintf(w, "  API / Go client:                %8.2f\n", perSec/r.direct.OrdersPerSec)
	if accepted > 0 {
		fmt.Fprintf(w, "  API CPU per accepted order:     %v\n", (r.apiCPU / time.Duration(accepted)).Round(time.Microsecond))
	}
	fmt.Fprintf(w, "  %d long-polls held %.0fs:      API CPU %v, %d Postgres transactions (%.0f poll ticks at 100ms)\n",
		r.waiters, r.waitSecs, r.waitCPU.Round(time.Millisecond), r.waitXacts, r.pollTicks)
}
