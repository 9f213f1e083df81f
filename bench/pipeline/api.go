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
	"strings"
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
	direct   summary   // enqueue flash-sale through the Go client, no --wait
	wrk      wrkResult // POST /v1/orders through the API
	apiCPU   time.Duration
	waiters  int
	waitSecs float64
	// The API's CPU and the statements Postgres ran (pg_stat_statements'
	// calls) while the long-polls were held, and over as long idle.
	waitCPU, idleCPU               time.Duration
	waitStatements, idleStatements string
	pollTicks                      float64 // seconds / poll interval
	connection                     int
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
	// cost the API and Postgres while held, against the same window idle?
	res.waiters, res.waitSecs = 2000, 10
	if res.idleCPU, res.idleStatements, err = e.window(ctx, api.pid(), res.waitSecs); err != nil {
		return res, err
	}
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
	// Measure from when every request has done its first Status and waits.
	if err := waitGauge(ctx, "http://"+addr+"/metrics", fmt.Sprintf("stockgate_api_waiting %d", res.waiters)); err != nil {
		return res, err
	}
	if res.waitCPU, res.waitStatements, err = e.window(ctx, api.pid(), res.waitSecs); err != nil {
		return res, err
	}
	cancel()
	wg.Wait()
	res.pollTicks = res.waitSecs / 0.1
	logf("  API CPU %v", res.waitCPU.Round(time.Millisecond))
	return res, nil
}

// waitGauge polls a /metrics page until it has line.
func waitGauge(ctx context.Context, url, line string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range bytes.Split(b, []byte("\n")) {
				if fields := bytes.Fields(l); len(fields) == 2 && bytes.HasPrefix(l, []byte("stockgate_api_waiting")) &&
					string(fields[1]) == strings.Fields(line)[1] {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never showed %q", url, line)
}

// topStatements is pg_stat_statements' busiest statements, by calls.
func (e *env) topStatements(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 90) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC LIMIT 5`)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var calls int64
		var q string
		if err := rows.Scan(&calls, &q); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "      %6d  %s\n", calls, q)
	}
	return b.String(), rows.Err()
}

// window is the API's CPU over secs, and the statements Postgres ran for
// the benchmark's database meanwhile.
func (e *env) window(ctx context.Context, apiPid int, secs float64) (time.Duration, string, error) {
	if err := e.sql(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return 0, "", err
	}
	c0, err := cpuTimes(apiPid, false)
	if err != nil {
		return 0, "", err
	}
	time.Sleep(time.Duration(secs * float64(time.Second)))
	c1, err := cpuTimes(apiPid, false)
	if err != nil {
		return 0, "", err
	}
	top, err := e.topStatements(ctx)
	return c1 - c0, top, err
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
	fmt.Fprintf(w, "  no request for %.0fs:             API CPU %v; Postgres statements by calls (pg_stat_statements):\n%s",
		r.waitSecs, r.idleCPU.Round(time.Millisecond), r.idleStatements)
	fmt.Fprintf(w, "  %d long-polls held %.0fs (%.0f poll ticks): API CPU %v; Postgres statements by calls:\n%s",
		r.waiters, r.waitSecs, r.pollTicks, r.waitCPU.Round(time.Millisecond), r.waitStatements)
}
