package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// Server is the storefront API server. Make it with New, then Start it.
type Server struct {
	cfg     Config
	orders  Orders
	metrics *metrics
	srv     *http.Server
	handler http.Handler
	ln      net.Listener
	done    chan struct{}

	// draining ends every long-poll at once on Shutdown, each answering
	// its order's state, so that a drain does not wait out their 30 s.
	draining context.Context
	drain    context.CancelFunc

	limiters map[string]*rate.Limiter // by key name; nil without a rate limit
}

// anonymous is the key name of requests to a server without keys.
const anonymous = "anonymous"

// New validates cfg and builds the server without listening yet.
func New(o Orders, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, orders: o, metrics: m, done: make(chan struct{})}
	s.draining, s.drain = context.WithCancel(context.Background())
	if cfg.RateLimit > 0 {
		s.limiters = map[string]*rate.Limiter{}
		for _, name := range append(KeyNames(cfg.Keys), anonymous) {
			s.limiters[name] = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
		}
	}

	mux := http.NewServeMux()
	// Patterns without a method, so that a wrong method gets the JSON 405
	// below rather than the mux's plain-text one.
	mux.HandleFunc("/v1/orders", s.route(http.MethodPost, true, s.postOrder))
	mux.HandleFunc("/v1/orders/{id}", s.route(http.MethodGet, true, s.getOrder))
	mux.HandleFunc("/v1/orders/{id}/confirm", s.route(http.MethodPost, true, s.confirmOrder))
	mux.HandleFunc("/v1/orders/{id}/cancel", s.route(http.MethodPost, true, s.cancelOrder))
	mux.HandleFunc("/v1/stock/{sku}", s.route(http.MethodGet, true, s.getStock))
	mux.HandleFunc("/v1/openapi.yaml", s.route(http.MethodGet, false, s.openAPI))
	mux.HandleFunc("/healthz", s.route(http.MethodGet, false, s.healthz))
	mux.HandleFunc("/readyz", s.route(http.MethodGet, false, s.readyz))
	if cfg.Metrics != nil {
		mux.HandleFunc("/metrics", s.route(http.MethodGet, true, cfg.Metrics.ServeHTTP))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: see /v1/openapi.yaml")
	})

	s.handler = otelhttp.NewHandler(s.observe(mux), "api",
		otelhttp.WithFilter(traced),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + routeOf(r.URL.Path) }),
	)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          newErrorLog(cfg.Logger),
	}
	return s, nil
}

// KeyNames are the keys' names, what logs and metrics may show of them.
func KeyNames(keys []Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}

// Handler is the server's whole handler, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds the address, so that a port in use fails in the caller, and
// serves in the background until Shutdown.
func (s *Server) Start() error {
	if s.ln != nil {
		return errors.New("api server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("api server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address once started, the configured one before.
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// Shutdown stops accepting, answers every long-poll with its order's state
// at once, and waits for the requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain()
	err := s.srv.Shutdown(ctx)
	if s.ln != nil {
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	}
	if err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// request is what the middleware learns about a request as it goes: the
// route it matched and the key it came with.
type request struct {
	route string
	key   string
}

type requestKey struct{}

func requestOf(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	if r == nil {
		return &request{}
	}
	return r
}

// observe records every response in the metrics and, for failures, the
// log, by route, status and key name; and refuses a path that is not in
// its clean form (.., //, a trailing slash), which the mux would redirect.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &request{route: "other", key: anonymous}
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, info))
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if p := r.URL.Path; p == "" || p != path.Clean(p) {
			writeError(rw, http.StatusNotFound, "not_found", "no such route: see /v1/openapi.yaml")
		} else {
			next.ServeHTTP(rw, r)
		}
		s.metrics.request(r.Context(), info.route, rw.code, info.key, time.Since(start))
		if rw.code >= 500 || rw.code == http.StatusUnauthorized || rw.code == http.StatusTooManyRequests {
			s.cfg.Logger.WarnContext(r.Context(), "api request refused", "method", r.Method, "route", info.route,
				"status", rw.code, "key", info.key, "reason", rw.reason)
		}
	})
}

// route wraps a handler with what every route does: the method check (a
// JSON 405 with Allow), then, when authed and the server has keys, the
// bearer check (401), then the key's rate limit (429).
func (s *Server) route(method string, authed bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info := requestOf(r.Context())
		info.route = r.Pattern
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+method)
			return
		}
		if !authed {
			h(w, r)
			return
		}
		if len(s.cfg.Keys) > 0 {
			name, err := s.authenticate(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="stockgate"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key: send Authorization: Bearer KEY")
				return
			}
			info.key = name
			trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("api.key", name))
		}
		if lim := s.limiters[info.key]; lim != nil {
			res := lim.Reserve()
			if d := res.Delay(); d > 0 {
				res.Cancel()
				w.Header().Set("Retry-After", fmt.Sprint(int(d/time.Second)+1))
				writeError(w, http.StatusTooManyRequests, "rate_limited", "over the rate limit of key "+info.key)
				return
			}
		}
		h(w, r)
	}
}

func (s *Server) authenticate(r *http.Request) (string, error) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNoKey
	}
	return match(s.cfg.Keys, strings.TrimSpace(secret))
}

// traced leaves out what machines poll every few seconds.
func traced(r *http.Request) bool {
	switch r.URL.Path {
	case "/metrics", "/healthz", "/readyz":
		return false
	}
	return true
}

// routeOf names a path by its route for span names, before the mux has
// matched it: ids stay out of span names.
func routeOf(p string) string {
	switch {
	case p == "/v1/orders", p == "/v1/openapi.yaml", p == "/healthz", p == "/readyz", p == "/metrics":
		return p
	case strings.HasPrefix(p, "/v1/orders/") && strings.HasSuffix(p, "/confirm"):
		return "/v1/orders/{id}/confirm"
	case strings.HasPrefix(p, "/v1/orders/") && strings.HasSuffix(p, "/cancel"):
		return "/v1/orders/{id}/cancel"
	case strings.HasPrefix(p, "/v1/orders/"):
		return "/v1/orders/{id}"
	case strings.HasPrefix(p, "/v1/stock/"):
		return "/v1/stock/{sku}"
	}
	return "other"
}

// statusWriter remembers the status, and the reason of an error body.
type statusWriter struct {
	http.ResponseWriter
	code   int
	reason string
	once   sync.Once
}

func (w *statusWriter) WriteHeader(code int) {
	w.once.Do(func() { w.code = code })
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
