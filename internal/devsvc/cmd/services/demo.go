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

// demo is make run, in six steps:
//  1. Redis and Postgres (devsvc.Services.Up), their URLs in ./.data/env;
//  2. go build -o bin/ ./cmd/..., then bin/stockctl migrate;
//  3. bin/stockctl set $SKU $STOCK (DEMO-SKU, 100);
//  4. bin/worker in a session of its own, logging to ./.data/worker.log,
//     its admin server on $ADMIN_ADDR (127.0.0.1:8080, or a free port when
//     that one is taken), waiting up to $READY_TIMEOUT s (30) for /readyz;
//     a worker left by an earlier make run is stopped first, and one that
//     never gets ready is stopped too;
//  5. bin/enqueue flash-sale --sku $SKU --buyers $BUYERS (1000) --wait;
//  6. bin/stockctl show $SKU and bin/stockctl reconcile, then where to
//     look next. The worker keeps running; make stop stops it.
type demo struct {
	s                         *devsvc.Services
	sku, stock, buyers, admin string
	ready, stop               time.Duration
}

func newDemo(s *devsvc.Services) (*demo, error) {
	d := &demo{
		s:      s,
		sku:    cmp.Or(os.Getenv("SKU"), "DEMO-SKU"),
		stock:  cmp.Or(os.Getenv("STOCK"), "100"),
		buyers: cmp.Or(os.Getenv("BUYERS"), "1000"),
		admin:  cmp.Or(os.Getenv("ADMIN_ADDR"), "127.0.0.1:8080"),
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
	logf("step 1/6: services")
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

	logf("step 2/6: build and migrate")
	if err := sh("go", "build", "-o", "bin/", "./cmd/..."); err != nil {
		return err
	}
	if err := sh(bin("stockctl"), "migrate"); err != nil {
		return err
	}

	logf("step 3/6: stock %s with %s units", d.sku, d.stock)
	if err := sh(bin("stockctl"), "set", d.sku, d.stock); err != nil {
		return err
	}

	logf("step 4/6: start the worker")
	pid, addr, err := d.startWorker(ctx, vars)
	if err != nil {
		return err
	}

	logf("step 5/6: flash sale, %s buyers for %s units of %s", d.buyers, d.stock, d.sku)
	if err := sh(bin("enqueue"), "flash-sale", "--sku", d.sku, "--buyers", d.buyers, "--wait"); err != nil {
		return err
	}

	logf("step 6/6: outcome")
	if err := sh(bin("stockctl"), "show", d.sku); err != nil {
		return err
	}
	drift := sh(bin("stockctl"), "reconcile")
	fmt.Printf(`
stockgate is running.
  worker log     %s   (pid %d)
  queues (UI)    http://%s/monitoring/
  metrics        curl -s http://%s/metrics | grep '^stockgate_orders_total'
  health         curl -s http://%s/readyz   (and /healthz)
  CLIs           . .data/env && bin/stockctl show %s   (or bin/enqueue order --customer c-1 %s=1)
  stop it all    make stop
`, d.path(".data", "worker.log"), pid, addr, addr, addr, d.sku, d.sku)
	if drift != nil {
		return errors.New("stockctl reconcile found drift between Redis and Postgres (printed above)")
	}
	return nil
}

// startWorker starts bin/worker so that it outlives make run, and waits
// until /readyz answers 200.
func (d *demo) startWorker(ctx context.Context, vars []string) (int, string, error) {
	if err := d.stopWorker(); err != nil {
		return 0, "", err
	}
	host, portText, err := net.SplitHostPort(d.admin)
	if err != nil {
		return 0, "", fmt.Errorf("ADMIN_ADDR=%q: %w", d.admin, err)
	}
	want, err := strconv.Atoi(portText)
	if err != nil {
		return 0, "", fmt.Errorf("ADMIN_ADDR=%q: the port is not a number", d.admin)
	}
	port, err := devsvc.FreePort(want)
	if err != nil {
		return 0, "", err
	}
	if port != want {
		logf("admin port %d is taken; using %d", want, port)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))

	logPath := d.path(".data", "worker.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, "", err
	}
	defer logFile.Close() // the worker has its own copy
	fmt.Fprintf(logFile, "\n==== make run %s ====\n", time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(d.path("bin", "worker"), "--admin-addr", addr)
	cmd.Dir, cmd.Env = d.s.Root, vars
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own: the worker outlives this terminal, and a
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
		os.WriteFile(d.path(".data", "worker.pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644),
		os.WriteFile(d.path(".data", "worker.addr"), []byte(addr+"\n"), 0o644)); err != nil {
		return 0, "", err
	}
	logf("worker pid %d, admin on http://%s, log %s", pid, addr, logPath)

	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(d.ready)
	status := "no answer"
	for {
		select {
		case <-exited:
			os.Stderr.WriteString(lastLines(logPath, 20))
			return 0, "", fmt.Errorf("the worker exited during start-up (%v); its log is %s (last lines above)", cmd.ProcessState, logPath)
		case <-ctx.Done():
			return 0, "", ctx.Err()
		default:
		}
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				logf("worker ready (/readyz answers 200)")
				return pid, addr, nil
			}
			status = resp.Status
		}
		if time.Now().After(deadline) {
			os.Stderr.WriteString(lastLines(logPath, 20))
			return 0, "", errors.Join(
				fmt.Errorf("the worker was not ready after %v (/readyz: %s), so it was stopped; its log is %s", d.ready, status, logPath),
				d.stopWorker())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopWorker stops the worker make run started (SIGTERM, so it drains;
// SIGKILL after STOP_TIMEOUT), and only our own bin/worker, never whatever
// now has a recycled pid.
func (d *demo) stopWorker() error {
	worker := d.path("bin", "worker")
	pid, err := devsvc.StopPidFile(d.path(".data", "worker.pid"),
		func(argv []string) bool { return len(argv) > 0 && argv[0] == worker }, d.stop)
	if errors.Is(err, devsvc.ErrKilled) {
		logf("warning: the worker did not drain in %v: %v", d.stop, err)
		err = nil
	}
	if pid != 0 {
		logf("stopped the worker (pid %d)", pid)
	}
	_ = os.Remove(d.path(".data", "worker.addr"))
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
