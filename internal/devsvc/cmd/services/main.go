// Command services is what the Makefile runs to bring up, use and stop the
// Redis and Postgres of this checkout (internal/devsvc does the work). The
// scripts build it into ./.data/bin and run it from the repository root:
//
//	services up [run|test]        bring them up; print export lines (eval-able)
//	services down [redis|pg|compose]...   stop what runs under ./.data
//	services status               say what runs under ./.data
//	services exec -- CMD [ARG...] make test, bench, fuzz, chaos: up test, run
//	                              CMD with TEST_DATABASE_URL, stop what it started
//	services run                  make run, the demo
//	services stop [worker]        make stop: the demo's API and worker, then the services
//	services clean                make clean: stop everything, delete ./.data
//	services dotenv               .env from .env.example, with random passwords
//
// It reads REDIS_URL, DATABASE_URL and TEST_DATABASE_URL (used when they
// answer), PG_BINDIR and PG_RUN_USER, and for run SKU, STOCK, BUYERS,
// ADMIN_ADDR, READY_TIMEOUT and STOP_TIMEOUT. A missing redis-server or
// Postgres is installed through scripts/deps.sh, which stops with one line
// naming what to install when it may not. Progress goes to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// errReported is an error whose one line is already on stderr.
var errReported = errors.New("reported")

// exitError carries a command's exit status through to ours.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	// go-redis prints its dial retries to stderr; a probe that finds
	// nothing is not news.
	redis.SetLogger(quietLogger{})
	err := run(os.Args[1:])
	var code exitError
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.Is(err, errReported):
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

const usage = "usage: services up [run|test] | down [redis|pg|compose]... | status | exec -- CMD [ARG...] | run | stop [worker] | clean | dotenv"

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	root, err := devsvc.ModuleRoot()
	if err != nil {
		return err
	}
	s := &devsvc.Services{
		Root:            root,
		Log:             os.Stderr,
		Install:         installer(root),
		RedisURL:        os.Getenv("REDIS_URL"),
		DatabaseURL:     os.Getenv("DATABASE_URL"),
		TestDatabaseURL: os.Getenv("TEST_DATABASE_URL"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, args := args[0], args[1:]
	switch cmd {
	case "up":
		mode := devsvc.Run
		switch {
		case len(args) == 1 && args[0] == "test":
			mode = devsvc.Test
		case len(args) > 1 || (len(args) == 1 && args[0] != "run"):
			return errors.New(usage)
		}
		env, err := s.Up(ctx, mode)
		if err != nil {
			return err
		}
		fmt.Print(env.Exports())
		return nil
	case "down":
		return s.Down(ctx, args...)
	case "status":
		fmt.Print(s.Status(ctx))
		return nil
	case "exec":
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			return errors.New(usage)
		}
		stop() // the command gets the signals; we wait for it, then stop the services
		return execWith(s, args)
	case "run", "stop", "clean":
		d, err := newDemo(s)
		if err != nil {
			return err
		}
		switch {
		case cmd == "run":
			return d.run(ctx)
		case cmd == "clean":
			return errors.Join(d.stopDaemons(), s.Clean(ctx))
		case len(args) == 1 && args[0] == "worker":
			return d.stopDaemons()
		}
		return errors.Join(d.stopDaemons(), s.Down(ctx))
	case "dotenv":
		return devsvc.Dotenv(root, os.Stderr)
	}
	return errors.New(usage)
}

// installer installs a tool with scripts/deps.sh (apt-get as root or
// through sudo -n). When it may not, deps.sh has said what to install.
func installer(root string) func(tool string) error {
	return func(tool string) error {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "deps.sh"), tool)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return errReported
		}
		return nil
	}
}

// execWith runs argv with what the tests need, then stops what it had to
// start, whatever argv's exit status, which it passes on. A server that
// was already running (say, make run's) is left alone.
func execWith(s *devsvc.Services, argv []string) (err error) {
	ctx := context.Background()
	env, err := s.Up(ctx, devsvc.Test)
	defer func() {
		if len(env.Started) > 0 {
			err = errors.Join(err, s.Down(ctx, env.Started...))
		}
	}()
	if err != nil {
		return err
	}
	log.SetFlags(0)
	log.SetOutput(os.Stderr)
	log.Printf("==> TEST_DATABASE_URL=%s", devsvc.Redact(env.TestDatabaseURL))
	log.Printf("==> %q", argv)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env.Vars()...)
	// Ctrl-C reaches the command from the terminal (one process group);
	// a SIGTERM sent to us alone is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGTERM {
				_ = cmd.Process.Signal(sig)
			}
		}
	}()
	return exitStatus(cmd.Wait())
}

// exitStatus turns a command's failure into our exit status: its code, or
// 128+N for signal N, as a shell reports it.
func exitStatus(err error) error {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return err
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitError(128 + int(ws.Signal()))
	}
	return exitError(exit.ExitCode())
}
