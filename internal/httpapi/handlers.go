package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/api"
	"github.com/stockgate/stockgate/internal/orders"
)

// retryAfter is what a 503 asks the client to wait, in seconds.
const retryAfter = "1"

// readyTimeout bounds one /readyz check.
const readyTimeout = 3 * time.Second

// errorBody is every error's body.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes {"error", "reason"}; msg must be one line.
func writeError(w http.ResponseWriter, code int, reason, msg string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.reason = reason
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, code, errorBody{Error: strings.Join(strings.Fields(msg), " "), Reason: reason})
}

// unavailable is the 503 for an error of Redis or Postgres; the error
// itself goes to the log (it names a host), not to the client.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Logger.WarnContext(r.Context(), "api backend error", "route", requestOf(r.Context()).route, "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "the order service cannot reach its store right now; try again")
}

// accepted is 202's body.
type accepted struct {
	OrderID string          `json:"order_id"`
	Status  stockgate.State `json:"status"`
}

// postOrder checks, in this order and before any side effect: the content
// type, the length, the payload exactly as a worker would; only then does
// it enqueue.
func (s *Server) postOrder(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the order with Content-Type: application/json")
		return
	}
	const limit = orders.MaxPayloadBytes
	tooLarge := func() {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "the order is over 64 KiB")
	}
	if r.ContentLength > limit {
		tooLarge()
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		tooLarge()
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid: unreadable body", "the request body could not be read")
		return
	}
	o, err := stockgate.DecodeOrder(body)
	var inv *stockgate.InvalidError
	if errors.As(err, &inv) {
		writeError(w, http.StatusBadRequest, inv.Error(), "the order is "+inv.Error())
		return
	}
	err = s.orders.Submit(r.Context(), o)
	switch {
	case err == nil:
		w.Header().Set("Location", "/v1/orders/"+o.OrderID)
		writeJSON(w, http.StatusAccepted, accepted{OrderID: o.OrderID, Status: stockgate.StatePending})
	case errors.Is(err, stockgate.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "order "+o.OrderID+" was submitted before with a different payload; the first stands")
	case errors.Is(err, stockgate.ErrDuplicate):
		s.duplicate(w, r, o.OrderID)
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, inv.Error(), "the order is "+inv.Error())
	case errors.Is(err, stockgate.ErrRedisFull):
		s.cfg.Logger.WarnContext(r.Context(), "api: redis is full (maxmemory); order refused", "order_id", o.OrderID)
		writeError(w, http.StatusServiceUnavailable, "redis_full", "the order queue is full right now; nothing was enqueued; try again later")
	default:
		s.unavailable(w, r, err)
	}
}

// duplicate answers a storefront's retry with the order's current state.
func (s *Server) duplicate(w http.ResponseWriter, r *http.Request, id string) {
	st, err := s.orders.Status(r.Context(), id)
	switch {
	case errors.Is(err, stockgate.ErrNotFound):
		// Its task's retention ended a moment ago, with no row yet to show.
		st = stockgate.Status{OrderID: id, State: stockgate.StatePending, Lines: []stockgate.Line{}}
	case err != nil:
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxWait {
			writeError(w, http.StatusBadRequest, "invalid_wait", "wait must be a duration from 0s to 30s, such as 10s")
			return
		}
		wait = d
	}
	var st stockgate.Status
	var err error
	if wait == 0 {
		st, err = s.orders.Status(r.Context(), id)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		stop := context.AfterFunc(s.draining, cancel)
		s.metrics.waiting.Add(r.Context(), 1)
		st, err = s.orders.Wait(ctx, id)
		s.metrics.waiting.Add(r.Context(), -1)
		stop()
		cancel()
		if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
			// The wait ended, or the server drains: say where the order is.
			if st.OrderID == "" {
				st, err = s.orders.Status(r.Context(), id)
			} else {
				err = nil
			}
		}
	}
	switch {
	case errors.Is(err, stockgate.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no order "+quoteID(id)+" was submitted")
	case err != nil:
		s.unavailable(w, r, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) getStock(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	st, err := s.orders.Stock(r.Context(), sku)
	switch {
	case errors.Is(err, stockgate.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "sku "+quoteID(sku)+" was never stocked")
	case err != nil:
		s.unavailable(w, r, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// quoteID quotes an id from the path for an error line: at most 64
// characters, escaped, so that a hostile one cannot break the line.
func quoteID(id string) string {
	if r := []rune(id); len(r) > 64 {
		id = string(r[:64]) + "..."
	}
	q, _ := json.Marshal(id)
	return string(q)
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(api.OpenAPI)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.orders.Ping(ctx); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.healthz(w, r)
}

// newErrorLog sends net/http's own complaints (TLS handshakes, bad
// requests, timeouts) to the logger at debug: a scanner on the port must
// not flood the log.
func newErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}
