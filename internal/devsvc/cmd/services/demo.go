package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// demo is make run, in seven steps:
//  1. Redis and Postgres (devsvc.Services.Up), their URLs in ./.data/env;
//  2. go build -o bin/ ./cmd/..., then bin/stockctl migrate;
//  3. bin/stockctl set $SKU $STOCK (DEMO-SKU, 100);
//  4. bin/worker in a session of its own, logging to ./.data/worker.log,
//     its admin server on $ADMIN_ADDR (127.0.0.1:8080, or a free port when
//     that one is taken), waiting up to $READY_TIMEOUT s (30) for /readyz;
//  5. bin/api the same way, on $API_ADDR (127.0.0.1:8090), logging to
//     ./.data/api.log; a worker or API left by an earlier make run is
//     stopped first, and one that never gets ready is stopped too;
//  6. bin/enqueue flash-sale --sku $SKU --buyers $BUYERS (1000) --wait;
//  7. bin/stockctl show $SKU and bin/stockctl reconcile, then where to
//     look next, with curl commands for the API that work as printed. The
//     worker and the API keep running; make stop stops them.
type demo struct {
	s                              *devsvc.Services
	sku, stock, buyers, admin, api string
	ready, stop                    time.Duration
}

func newDemo(s *devsvc.Services) (*demo, error) {
	d := &demo{
		s:      s,
		sku:    cmp.Or(os.Getenv("SKU"), "DEMO-SKU"),
		stock:  cmp.Or(os.Getenv("STOCK"), "100"),
		buyers: cmp.Or(os.Getenv("BUYERS"), "1000"),
		admin:  cmp.Or(os.Getenv("ADMIN_ADDR"), "127.0.0.1:8080"),
		api:    cmp.Or(os.Getenv("API_ADDR"), "127.0.0.1:8090"),
	}
	for _, t := range []struct {
		name string
		def  int
		to   *time.Duration
	}{{"READY_TIMEOUT", 30, &d.ready}, {"STOP_TIMEOUT", 35, &d.stop}} {
		secs := t.def
		if v := os.Getenv(t.name); v != "" {
			var err error
			if secs, err = strconv.Atoi(v); err != nil || secs <= 0 {
				return nil, fmt.Errorf("%s=%q: want a number of seconds", t.name, v)
			}
		}
		*t.to = time.Duration(secs) * time.Second
	}
	return d, nil
}

func (d *demo) path(elem ...string) string {
	return filepath.Join(append([]string{d.s.Root}, elem...)...)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

func (d *demo) run(ctx context.Context) error {
	logf("step 1/7: services")
	env, err := d.s.Up(ctx, devsvc.Run)
	if err != nil {
		return err
	}
	logf("REDIS_URL=%s", devsvc.Redact(env.RedisURL))
	logf("DATABASE_URL=%s", devsvc.Redact(env.DatabaseURL))
	vars := append(os.Environ(), env.Vars()...)
	sh := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = d.s.Root, vars
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", filepath.Base(name), args[0], err)
		}
		return nil
	}
	bin := func(name string) string { return d.path("bin", name) }

	logf("step 2/7: build and migrate")
	if err := sh("go", "build", "-o", "bin/", "./cmd/..."); err != nil {
		return err
	}
	if err := sh(bin("stockctl"), "migrate"); err != nil {
		return err
	}

	logf("step 3/7: stock %s with %s units", d.sku, d.stock)
	if err := sh(bin("stockctl"), "set", d.sku, d.stock); err != nil {
		return err
	}

	if err := d.stopDaemons(); err != nil {
		return err
	}
	logf("step 4/7: start the worker")
	pid, addr, err := d.start(ctx, vars, "worker", "--admin-addr", d.admin)
	if err != nil {
		return err
	}
	logf("step 5/7: start the storefront API")
	apiPid, apiAddr, err := d.start(ctx, vars, "api", "--addr", d.api)
	if err != nil {
		return err
	}

	logf("step 6/7: flash sale, %s buyers for %s units of %s", d.buyers, d.stock, d.sku)
	if err := sh(bin("enqueue"), "flash-sale", "--sku", d.sku, "--buyers", d.buyers, "--wait"); err != nil {
		return err
	}

	logf("step 7/7: outcome")
	if err := sh(bin("stockctl"), "show", d.sku); err != nil {
		return err
	}
	drift := sh(bin("stockctl"), "reconcile")
	fmt.Printf(`
stockgate is running.
  worker log     %s   (pid %d)
  api log        %s   (pid %d)
  queues (UI)    http://%s/monitoring/
  metrics        curl -s http://%s/metrics | grep '^stockgate_orders_total'
  health         curl -s http://%s/readyz   (and /healthz)
  CLIs           . .data/env && bin/stockctl show %s   (or bin/enqueue order --customer c-1 %s=1)
  stop it all    make stop

Place an order through the storefront API, then wait up to 10s for its outcome:
  curl -s -X POST http://%s/v1/orders -H 'Content-Type: application/json' \
    -d '{"order_id":"curl-1","customer_id":"c-1","lines":[{"sku":"%s","qty":1}]}'
  curl -s 'http://%s/v1/orders/curl-1?wait=10s'
  curl -s http://%s/v1/stock/%s
`, d.path(".data", "worker.log"), pid, d.path(".data", "api.log"), apiPid, addr, addr, addr, d.sku, d.sku,
		apiAddr, d.sku, apiAddr, apiAddr, d.sku)
	if drift != nil {
		return errors.New("stockctl reconcile found drift between Redis and Postgres (printed above)")
	}
	return nil
}

// start starts bin/NAME with addrFlag on want (or a free port when want's
// is taken) so that it outlives make run, logging to ./.data/NAME.log, its
// pid and address in ./.data/NAME.pid and .addr, and waits until /readyz
// on that address answers 200.
func (d *demo) start(ctx context.Context, vars []string, name, addrFlag, want string) (int, string, error) {
	host, portText, err := net.SplitHostPort(want)
	if err != nil {
		return 0, "", fmt.Errorf("%s address %q: %w", name, want, err)
	}
	wantPort, err := strconv.Atoi(portText)
	if err != nil {
		return 0, "", fmt.Errorf("%s address %q: the port is not a number", name, want)
	}
	port, err := devsvc.FreePort(wantPort)
	if err != nil {
		return 0, "", err
	}
	if port != wantPort {
		logf("%s port %d is taken; using %d", name, wantPort, port)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))

	logPath := d.path(".data", name+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, "", err
	}
	defer logFile.Close() // the process has its own copy
	fmt.Fprintf(logFile, "\n==== make run %s ====\n", time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(d.path("bin", name), addrFlag, addr)
	cmd.Dir, cmd.Env = d.s.Root, vars
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own: the process outlives this terminal, and a
	// Ctrl-C typed in it later.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := errors.Join(
		os.WriteFile(d.path(".data", name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644),
		os.WriteFile(d.path(".data", name+".addr"), []byte(addr+"\n"), 0o644)); err != nil {
		return 0, "", err
	}
	logf("%s pid %d on http://%s, log %s", name, pid, addr, logPath)

	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(d.ready)
	status := "no answer"
	for {
		select {
		case <-exited:
			os.Stderr.WriteString(lastLines(logPath, 20))
			return 0, "", fmt.Errorf("the %s exited during start-up (%v); its log is %s (last lines above)", name, cmd.ProcessState, logPath)
		case <-ctx.Done():
			return 0, "", ctx.Err()
		default:
		}
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				logf("%s ready (/readyz answers 200)", name)
				return pid, addr, nil
			}
			status = resp.Status
		}
		if time.Now().After(deadline) {
			os.Stderr.WriteString(lastLines(logPath, 20))
			return 0, "", errors.Join(
				fmt.Errorf("the %s was not ready after %v (/readyz: %s), so it was stopped; its log is %s", name, d.ready, status, logPath),
				d.stopDaemon(name))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopDaemons stops the API, then the worker, that make run started.
func (d *demo) stopDaemons() error { return errors.Join(d.stopDaemon("api"), d.stopDaemon("worker")) }

// stopDaemon stops bin/NAME that make run started (SIGTERM, so it drains;
// SIGKILL after STOP_TIMEOUT), and only our own, never whatever now has a
// recycled pid.
func (d *demo) stopDaemon(name string) error {
	bin := d.path("bin", name)
	pid, err := devsvc.StopPidFile(d.path(".data", name+".pid"),
		func(argv []string) bool { return len(argv) > 0 && argv[0] == bin }, d.stop)
	if errors.Is(err, devsvc.ErrKilled) {
		logf("warning: the %s did not drain in %v: %v", name, d.stop, err)
		err = nil
	}
	if pid != 0 {
		logf("stopped the %s (pid %d)", name, pid)
	}
	_ = os.Remove(d.path(".data", name+".addr"))
	return err
}

// lastLines is the last n lines of a file.
func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > n+1 {
		lines = lines[len(lines)-n-1:]
	}
	return string(bytes.Join(lines, nil))
}
