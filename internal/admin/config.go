package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/config"
)

// DefaultAddr keeps the admin server off the network unless asked.
const DefaultAddr = "127.0.0.1:8080"

// ErrPublicWithoutAuth is returned by Validate for a non-loopback address
// without basic auth: /monitoring/ can pause queues and delete tasks, and
// /metrics names every SKU.
var ErrPublicWithoutAuth = errors.New("refusing to listen on a non-loopback address without basic auth: set ADMIN_USER and ADMIN_PASSWORD, or listen on 127.0.0.1")

// Config configures the admin server.
type Config struct {
	// Addr is host:port to listen on; DefaultAddr when empty. Port 0 picks
	// a free port (see Server.Addr).
	Addr string
	// User and Password turn on basic auth for every path but /healthz.
	// Both or neither (cmd/worker reads ADMIN_USER and ADMIN_PASSWORD).
	User, Password string
	// Metrics serves /metrics; without it /metrics is 404.
	Metrics http.Handler
	// Ready answers /readyz: nil means ready, an error is the reason it is
	// not. It runs with a timeout on every probe, so keep it cheap. Nil
	// Ready reports ready whenever the process serves.
	Ready func(ctx context.Context) error
	// RedisConnOpt is the Redis that asynqmon inspects at /monitoring/;
	// without it /monitoring/ is 404.
	RedisConnOpt asynq.RedisConnOpt
	// MonitoringWritable lets /monitoring/ change queues (pause, delete,
	// run tasks). Read-only unless set.
	MonitoringWritable bool
	// Profiling serves net/http/pprof under /debug/pprof/, behind the same
	// auth. Off unless set: a profile shows code paths and memory contents.
	Profiling bool
	// Logger receives server errors and readiness changes; none when nil.
	Logger *slog.Logger
}

// Validate reports a configuration the server must not start with, in one
// line fit for the worker's stderr.
func (c Config) Validate() error {
	addr := cmp.Or(c.Addr, DefaultAddr)
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		if ae, ok := err.(*net.AddrError); ok {
			reason = ae.Err // the whole error repeats addr unquoted, which could break the line
		}
		return fmt.Errorf("admin address %q: want host:port such as %s: %s", addr, DefaultAddr, reason)
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("admin basic auth: set both ADMIN_USER and ADMIN_PASSWORD, or neither")
	}
	if c.User == "" && !config.IsLoopback(host) {
		return fmt.Errorf("admin address %q: %w", addr, ErrPublicWithoutAuth)
	}
	return nil
}
