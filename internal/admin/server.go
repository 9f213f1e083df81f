package admin

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynqmon"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// readyTimeout bounds one /readyz check: a probe that hangs is a failed probe.
const readyTimeout = 5 * time.Second

// Server is the admin HTTP server. Make it with New, then Start it.
type Server struct {
	cfg  Config
	log  *slog.Logger
	srv  *http.Server
	mon  *asynqmon.HTTPHandler
	ln   net.Listener
	done chan struct{}
	// ready remembers the last /readyz outcome so that only changes are
	// logged, not every probe of a compose healthcheck.
	ready atomic.Int32
}

const (
	readyUnknown int32 = iota
	readyYes
	readyNo
)

// New validates cfg and builds the server without listening yet.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Addr = cmp.Or(cfg.Addr, DefaultAddr)
	s := &Server{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { plain(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.RedisConnOpt != nil {
		s.mon = asynqmon.New(asynqmon.Options{
			RootPath:     "/monitoring",
			RedisConnOpt: cfg.RedisConnOpt,
			ReadOnly:     !cfg.MonitoringWritable,
		})
		mux.Handle("/monitoring/", s.mon)
	}

	if cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	var h http.Handler = mux
	if cfg.User != "" {
		h = basicAuth(h, cfg.User, cfg.Password)
	}
	h = otelhttp.NewHandler(h, "admin",
		otelhttp.WithFilter(traced),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + route(r.URL.Path) }),
	)
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Start binds the address, so that a port in use fails here, in the
// caller, and then serves in the background until Shutdown.
func (s *Server) Start() error {
	if s.ln != nil {
		return errors.New("admin server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address once started (the real port when Addr asked
// for port 0), the configured one before.
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// Shutdown stops accepting, waits for requests in flight until ctx ends,
// and closes asynqmon's Redis connections.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if err := s.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
	}
	if s.ln != nil {
		select {
		case <-s.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("admin shutdown: %w", ctx.Err()))
		}
	}
	if s.mon != nil {
		if err := s.mon.Close(); err != nil {
			errs = append(errs, fmt.Errorf("asynqmon close: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready == nil {
		plain(w, http.StatusOK, "ok")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.cfg.Ready(ctx); err != nil {
		reason := strings.Join(strings.Fields(err.Error()), " ")
		if s.ready.Swap(readyNo) != readyNo {
			s.log.Warn("not ready", "reason", reason)
		}
		plain(w, http.StatusServiceUnavailable, reason)
		return
	}
	if s.ready.Swap(readyYes) == readyNo {
		s.log.Info("ready again")
	}
	plain(w, http.StatusOK, "ok")
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	b.WriteString("stockgate admin\n\n/healthz     the process is alive\n/readyz      Redis and Postgres answer, migrations are current\n")
	if s.cfg.Metrics != nil {
		b.WriteString("/metrics     Prometheus metrics\n")
	}
	if s.mon != nil {
		mode := "read-only"
		if s.cfg.MonitoringWritable {
			mode = "writable"
		}
		b.WriteString("/monitoring/ asynqmon queue UI (" + mode + ")\n")
	}
	plain(w, http.StatusOK, b.String())
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, strings.TrimSuffix(msg, "\n")+"\n")
}

// basicAuth guards everything but /healthz, which a container runtime
// probes without credentials. The credentials are compared as SHA-256
// digests, so the comparison takes the same time whatever their lengths.
func basicAuth(next http.Handler, user, password string) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="stockgate admin", charset="UTF-8"`)
			plain(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// traced leaves out the paths machines poll every few seconds (Prometheus,
// container healthchecks): a span per probe would bury the order traces.
func traced(r *http.Request) bool {
	switch r.URL.Path {
	case "/metrics", "/healthz", "/readyz":
		return false
	}
	return true
}

// route keeps span names low-cardinality: asynqmon's API paths carry queue
// names and task ids.
func route(path string) string {
	switch {
	case strings.HasPrefix(path, "/monitoring/api/"):
		return "/monitoring/api"
	case strings.HasPrefix(path, "/monitoring"):
		return "/monitoring/"
	case path == "/" || path == "/healthz" || path == "/readyz" || path == "/metrics":
		return path
	}
	return "other"
}
