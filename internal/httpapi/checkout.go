package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/stockgate/stockgate"
)

// maxMoveBody bounds the body of a confirm or a cancel: a reason, at most
// 200 characters, and its JSON.
const maxMoveBody = 4 << 10

// tooLateBody is the 409 of a confirm or cancel that can no longer move
// the order: the usual error fields, and the order as it stands.
type tooLateBody struct {
	Error  string           `json:"error"`
	Reason string           `json:"reason"`
	Order  stockgate.Status `json:"order"`
}

// moveBody is what a confirm or a cancel may send: an optional reason.
type moveBody struct {
	Reason string `json:"reason"`
}

func (s *Server) confirmOrder(w http.ResponseWriter, r *http.Request) {
	s.move(w, r, func(ctx context.Context, id, reason string) (stockgate.Status, error) {
		if reason != "" {
			return stockgate.Status{}, &stockgate.InvalidError{Reason: "a confirm takes no reason"}
		}
		return s.orders.Confirm(ctx, id)
	})
}

func (s *Server) cancelOrder(w http.ResponseWriter, r *http.Request) {
	s.move(w, r, s.orders.Cancel)
}

// move reads the optional body, then confirms or cancels the order through
// the client, which waits (at most Config.MoveWait, or until the server drains)
// for a worker to move it: 200 with the state that now stands, 409 when it
// can no longer move (too late), 202 when no worker moved it in time (the
// task stays queued), 404 for an order never submitted.
func (s *Server) move(w http.ResponseWriter, r *http.Request, do func(ctx context.Context, id, reason string) (stockgate.Status, error)) {
	id := r.PathValue("id")
	reason, ok := s.readMoveBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.MoveWait)
	stop := context.AfterFunc(s.draining, cancel)
	s.metrics.waiting.Add(r.Context(), 1)
	st, err := do(ctx, id, reason)
	s.metrics.waiting.Add(r.Context(), -1)
	stop()
	cancel()
	var inv *stockgate.InvalidError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, st)
	case errors.Is(err, stockgate.ErrTooLate):
		if sw, ok := w.(*statusWriter); ok {
			sw.reason = "too_late"
		}
		writeJSON(w, http.StatusConflict, tooLateBody{Error: "order " + st.OrderID + " is " + string(st.State) + ": too late for that",
			Reason: "too_late", Order: st})
	case errors.Is(err, stockgate.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no order "+quoteID(id)+" was submitted")
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, inv.Error(), "the request is "+inv.Error())
	case ctx.Err() != nil && r.Context().Err() == nil && st.OrderID != "":
		// Asked, not yet moved: the task is queued and a worker applies it.
		writeJSON(w, http.StatusAccepted, st)
	default:
		s.unavailable(w, r, err)
	}
}

// readMoveBody reads an optional {"reason": "..."}: no body at all, or
// JSON with no other field. It answers the request itself when it refuses.
func (s *Server) readMoveBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMoveBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "the body is over 4 KiB")
		return "", false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid: unreadable body", "the request body could not be read")
		return "", false
	case len(bytes.TrimSpace(body)) == 0:
		return "", true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body with Content-Type: application/json")
		return "", false
	}
	// As strict as the payloads: exact keys, no other field, none twice,
	// valid UTF-8, nothing after the object.
	var mb moveBody
	if err := jsonv2.Unmarshal(body, &mb, jsonv2.RejectUnknownMembers(true), jsonv2.MatchCaseInsensitiveNames(false)); err != nil {
		writeError(w, http.StatusBadRequest, `invalid: body must be {"reason": "..."}`, `the body must be {"reason": "..."} or nothing`)
		return "", false
	}
	return mb.Reason, true
}
