package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/failpoint"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/stock"
)

// ErrStockNotLoaded is returned (and retried) when an order names a SKU
// that Postgres's catalogue has but Redis has no counters for.
var ErrStockNotLoaded = errors.New("stock not loaded")

// Gate is what the handler needs from the stock gate (*stock.Gate).
type Gate interface {
	orders.Holds
	Reserve(ctx context.Context, orderID string, lines []stock.Line, deadline time.Time) (stock.Reservation, error)
}

// Store is what the handler needs from the order store (*orderstore.Store).
type Store interface {
	orders.Rows
	// Get returns the order's row, or orders.ErrNotFound.
	Get(ctx context.Context, orderID string) (orders.Record, error)
}

// Catalog tells a SKU that Redis lost from one that never existed
// (*catalog.Catalog).
type Catalog interface {
	Catalogued(ctx context.Context, sku string) (bool, error)
}

// Limiter counts a customer's orders (*ratelimit.Limiter).
type Limiter interface {
	// Allow returns ratelimit.ErrLimited once the customer has placed more
	// than limit orders in the current window.
	Allow(ctx context.Context, customerID string, limit int, window time.Duration) error
}

// Defaults for HandlerConfig.
const (
	DefaultHoldTTL        = 5 * time.Minute
	DefaultHandlerTimeout = 30 * time.Second
)

// HandlerConfig configures a Handler. The zero value is usable.
type HandlerConfig struct {
	// HoldTTL is how long a reservation may stay undecided before the
	// sweeper expires it. It must stay well above the Asynq lease plus
	// HandlerTimeout, or the sweeper could expire an order still being
	// processed. Default DefaultHoldTTL.
	HoldTTL time.Duration
	// HandlerTimeout bounds one processing attempt. Default DefaultHandlerTimeout.
	HandlerTimeout time.Duration
	// MaxHold is the longest checkout hold an order may ask for; one asking
	// for more is rejected "invalid: hold ... is over the maximum". Default
	// orders.DefaultMaxHold.
	MaxHold time.Duration
	// RateLimit is the most orders one customer may place per RateWindow;
	// 0 turns the per-customer limit off. It needs a Limiter.
	RateLimit  int
	RateWindow time.Duration
	// Now is the clock; tests replace it. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger

	// hook, set only by this package's tests, runs at the named steps and
	// may inject a failure there.
	hook func(step string) error
}

func (c *HandlerConfig) validate(limiter Limiter) error {
	if c.RateLimit < 0 {
		return fmt.Errorf("rate limit %d must be >= 0", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateWindow < time.Millisecond {
		return errors.New("rate limit needs a window of at least 1ms")
	}
	if c.RateLimit > 0 && limiter == nil {
		return errors.New("rate limit needs a limiter")
	}
	if c.HoldTTL < 2*c.HandlerTimeout {
		return fmt.Errorf("hold ttl %v must be at least twice the handler timeout %v", c.HoldTTL, c.HandlerTimeout)
	}
	if c.MaxHold < orders.MinHold || c.MaxHold > orders.MaxHoldLimit {
		return fmt.Errorf("max hold %v must be from %v to %v", c.MaxHold, orders.MinHold, orders.MaxHoldLimit)
	}
	return nil
}

// Deps are the services a Handler works with.
type Deps struct {
	Gate    Gate
	Store   Store
	Catalog Catalog
	// Ledger records the units a cancellation after the sale gives back
	// (*catalog.Catalog); order:cancel of a confirmed order needs it.
	Ledger  orders.Ledger
	Limiter Limiter // needed only with HandlerConfig.RateLimit
}

// Handler processes order:place tasks: it runs the flow of one order
// (docs/design.md, "The flow of one order") over the stock gate and the
// order store. The orders row is the arbiter: the first terminal write wins
// and every later step follows it (orders.Flow).
type Handler struct {
	gate    Gate
	store   Store
	catalog Catalog
	limiter Limiter
	flow    orders.Flow
	cfg     HandlerConfig
	log     *slog.Logger
	tr      trace.Tracer
	m       *metrics
}

// NewHandler returns a Handler.
func NewHandler(d Deps, cfg HandlerConfig) (*Handler, error) {
	cfg.HoldTTL = cmp.Or(cfg.HoldTTL, DefaultHoldTTL)
	cfg.HandlerTimeout = cmp.Or(cfg.HandlerTimeout, DefaultHandlerTimeout)
	cfg.MaxHold = cmp.Or(cfg.MaxHold, orders.DefaultMaxHold)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.validate(d.Limiter); err != nil {
		return nil, err
	}
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		gate:    d.Gate,
		store:   d.Store,
		catalog: d.Catalog,
		limiter: d.Limiter,
		cfg:     cfg,
		log:     cmp.Or(cfg.Logger, slog.Default()),
		tr:      otel.Tracer(instrumentation),
		m:       m,
	}
	h.flow = orders.Flow{
		Rows:   tracedRows{d.Store, h.tr, m.moves},
		Holds:  tracedHolds{d.Gate, h.tr, h.log},
		Ledger: d.Ledger,
		Mark:   h.mark,
	}
	return h, nil
}

// ProcessTask implements asynq.Handler.
//
// A nil return means the order has its terminal row (or belongs to a row
// that stands). An error wrapping asynq.SkipRetry means the task can never
// succeed (no usable order id) and is archived. Any other error is an
// infrastructure failure: Asynq retries with backoff and the holds stay for
// the retry to find.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.HandlerTimeout)
	defer cancel()
	start := h.cfg.Now()

	o, err := h.validate(ctx, t.Payload())
	if err != nil {
		var inv *orders.InvalidError
		if !errors.As(err, &inv) {
			return err
		}
		if inv.OrderID == "" {
			h.m.decided(ctx, "archived", "invalid", start, h.cfg.Now())
			h.log.WarnContext(ctx, "order archived: no usable order id", "reason", inv.Error())
			return fmt.Errorf("%s: %w", inv.Error(), asynq.SkipRetry)
		}
		return h.reject(ctx, orders.Order{OrderID: inv.OrderID}, inv.Error(), "", start, false)
	}
	if err := h.attempt(ctx, o, start); err != nil {
		return err
	}
	// The order is decided and its holds follow the row; Asynq has yet to
	// mark the task done.
	return h.mark("before_ack")
}

func (h *Handler) validate(ctx context.Context, payload []byte) (orders.Order, error) {
	_, span := h.tr.Start(ctx, "order.validate")
	defer span.End()
	o, err := orders.Decode(payload)
	if err == nil {
		// The payload's bound is orders.MaxHoldLimit; this worker's may be less.
		err = o.CheckHold(h.cfg.MaxHold)
	}
	if err != nil {
		span.SetAttributes(attribute.String("order.outcome", "invalid"))
		span.SetStatus(codes.Error, err.Error())
		return orders.Order{}, err
	}
	// Decode has merged duplicate SKUs: from here on each SKU is one line.
	span.SetAttributes(attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines)))
	return o, nil
}

// attempt runs one attempt at the order and owns the last one: when it
// fails with no retry left, the order is recorded failed (unless a row
// stands) and its holds follow the row that stands. The row comes first
// because an earlier attempt, or this one, may have confirmed the order
// before failing: its holds must then be committed, never given back. If
// either step fails too, the hold's deadline still hands the order to the
// sweeper.
func (h *Handler) attempt(ctx context.Context, o orders.Order, start time.Time) error {
	n, _ := asynq.GetRetryCount(ctx)
	maxRetry, hasMax := asynq.GetMaxRetry(ctx)
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.String("order.id", o.OrderID),
		attribute.Int("order.lines", len(o.Lines)),
		attribute.Int("order.attempt", n),
	)
	err := h.place(ctx, o, start)
	if err == nil || !hasMax || n < maxRetry {
		return err
	}
	h.log.ErrorContext(ctx, "order retries exhausted", "order_id", o.OrderID, "attempt", n, "err", err)
	if cerr := h.conclude(ctx, o, orders.Record{
		Status: orders.StatusFailed, Reason: orders.ReasonRetriesExhausted, Detail: truncate(err.Error(), 200),
	}, start); cerr != nil {
		return errors.Join(err, cerr)
	}
	return nil
}

// place runs steps 2 to 6 of the flow. A nil error means the order's
// terminal row stands and its holds follow it.
func (h *Handler) place(ctx context.Context, o orders.Order, start time.Time) error {
	// Step 2: a retry (a failed attempt, or a lease that expired under a
	// worker that died) may find a row standing; it then follows the row.
	// A first attempt skips the lookup, the hot path's one Postgres read:
	// the reserve says whether the hold is new, and the insert says whether
	// a row stood, with the token of the holds it relied on (Settle).
	if n, _ := asynq.GetRetryCount(ctx); n > 0 {
		row, err := h.lookup(ctx, o.OrderID)
		switch {
		case err == nil:
			if row.PayloadHash != "" && row.PayloadHash != o.Hash() {
				h.m.conflicts.Add(ctx, 1)
				h.log.WarnContext(ctx, "order conflict: another payload with this id already stands; dropping this one",
					"order_id", o.OrderID, "status", row.Status)
			}
			_, err := h.flow.Settle(ctx, row, o.SKUs())
			return err
		case !errors.Is(err, orders.ErrNotFound):
			return fmt.Errorf("look up order: %w", err)
		}
	}

	// Step 3: per-customer rate limit.
	if h.cfg.RateLimit > 0 {
		if err := h.rateLimit(ctx, o); errors.Is(err, ratelimit.ErrLimited) {
			return h.reject(ctx, o, orders.ReasonRateLimited, "", start, false)
		} else if err != nil {
			return err
		}
	}

	// Step 4: reserve every line in one script call. A checkout's hold
	// lives in Redis at least as long as its deadline in Postgres, so that
	// the sweeper never gives back a hold whose checkout may still confirm
	// (docs/design.md, "Checkout").
	// Redis keeps deadlines in milliseconds: the same instant in both.
	now := h.cfg.Now().Truncate(time.Millisecond)
	hold := o.HoldDuration()
	res, err := h.reserve(ctx, o, now.Add(max(hold, h.cfg.HoldTTL)))
	if err != nil {
		return h.refused(ctx, o, res, err, start)
	}
	if err := h.mark("after_reserve"); err != nil {
		return err
	}

	// Steps 5 and 6: record confirmed (or, for a checkout, held until its
	// deadline), if no row stands yet, and the holds follow the row:
	// commit ours, keep them for the checkout, or do what the winner says.
	rec := orders.Record{Status: orders.StatusConfirmed, HoldToken: res.Token}
	if hold > 0 {
		until := now.Add(hold)
		rec.Status, rec.HoldUntil = orders.StatusHeld, &until
	}
	return h.conclude(ctx, o, rec, start)
}

// refused handles a reserve that did not take the stock: a business
// refusal becomes a rejected row, a SKU Redis lost is retried (fail
// closed), and anything else is an infrastructure error for Asynq to retry.
func (h *Handler) refused(ctx context.Context, o orders.Order, res stock.Reservation, err error, start time.Time) error {
	var oos *stock.OutOfStockError
	var ns *stock.NotStockedError
	switch {
	case errors.As(err, &oos):
		return h.reject(ctx, o, orders.ReasonOutOfStock, fmt.Sprintf("%s has %d available", oos.SKU, oos.Available), start, res.Partial)
	case errors.As(err, &ns):
		// A SKU the catalogue knows but Redis does not means Redis lost
		// its counters. Retry until stockctl rebuild restores them;
		// rejecting would turn data loss into sold-out.
		known, cerr := h.catalog.Catalogued(ctx, ns.SKU)
		if cerr != nil {
			return errors.Join(err, cerr)
		}
		if known {
			h.log.WarnContext(ctx, "stock not loaded in Redis for a catalogued SKU; retrying (run stockctl rebuild if Redis lost its data)",
				"order_id", o.OrderID, "sku", ns.SKU)
			return fmt.Errorf("%w: %s is catalogued in Postgres but has no counters in Redis", ErrStockNotLoaded, ns.SKU)
		}
		return h.reject(ctx, o, orders.ReasonUnknownSKU, ns.SKU+" was never stocked", start, res.Partial)
	case errors.Is(err, stock.ErrConflict):
		// Another payload with this id holds different lines right now.
		// It decides the row; this one is dropped, not retried.
		h.m.conflicts.Add(ctx, 1)
		h.log.WarnContext(ctx, "order conflict: this id holds other lines; dropping this payload", "order_id", o.OrderID)
		return nil
	case errors.Is(err, stock.ErrInvalid):
		return h.reject(ctx, o, "invalid: "+err.Error(), "", start, res.Partial)
	}
	return err
}

// reject records the order rejected, unless a row already stands. When
// the delivery may hold something (held: a reserve that took some slot
// groups before one refused) the holds then follow the row that stands
// (orders.Flow.Conclude); otherwise nothing is held and nothing is settled
// (orders.Flow.Refuse).
func (h *Handler) reject(ctx context.Context, o orders.Order, reason, detail string, start time.Time, held bool) error {
	rec := h.record(o, orders.Record{Status: orders.StatusRejected, Reason: reason, Detail: detail})
	var row orders.Record
	var inserted bool
	var err error
	if held {
		row, inserted, _, err = h.flow.Conclude(ctx, rec, o.SKUs())
	} else {
		row, inserted, err = h.flow.Refuse(ctx, rec)
	}
	if inserted {
		h.m.decided(ctx, string(row.Status), row.Reason, start, h.cfg.Now())
		// Debug, not info: a sold-out sale rejects thousands a second, and
		// the row already says why.
		h.log.DebugContext(ctx, "order rejected", "order_id", o.OrderID, "reason", reason, "detail", detail)
	}
	return err
}

// record fills rec from the order.
func (h *Handler) record(o orders.Order, rec orders.Record) orders.Record {
	rec.OrderID, rec.CustomerID, rec.PlacedAt, rec.Lines = o.OrderID, o.CustomerID, o.PlacedAt, o.Lines
	if len(o.Lines) > 0 {
		rec.PayloadHash = o.Hash()
	}
	return rec
}

// conclude fills rec from the order, records it unless a row stands, and
// makes the order's holds follow the row that stands.
func (h *Handler) conclude(ctx context.Context, o orders.Order, rec orders.Record, start time.Time) error {
	row, inserted, _, err := h.flow.Conclude(ctx, h.record(o, rec), o.SKUs())
	if inserted {
		h.m.decided(ctx, string(row.Status), row.Reason, start, h.cfg.Now())
	}
	return err
}

// mark names a step of the flow: the chaos suite's failpoints (only in
// binaries built with the failpoints tag) and this package's test hook can
// crash, stall or fail the attempt there.
func (h *Handler) mark(step string) error {
	failpoint.Inject(step)
	if h.cfg.hook == nil {
		return nil
	}
	return h.cfg.hook(step)
}

func (h *Handler) rateLimit(ctx context.Context, o orders.Order) error {
	ctx, span := h.tr.Start(ctx, "order.rate_limit", trace.WithAttributes(attribute.String("order.id", o.OrderID)))
	defer span.End()
	err := h.limiter.Allow(ctx, o.CustomerID, h.cfg.RateLimit, h.cfg.RateWindow)
	endSpan(span, err)
	return err
}

func (h *Handler) reserve(ctx context.Context, o orders.Order, deadline time.Time) (stock.Reservation, error) {
	ctx, span := h.tr.Start(ctx, "order.reserve", trace.WithAttributes(
		attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines))))
	defer span.End()
	t0 := time.Now()
	res, err := h.gate.Reserve(ctx, o.OrderID, o.StockLines(), deadline)
	h.m.reserveSeconds.Record(ctx, time.Since(t0).Seconds())
	if err == nil {
		span.SetAttributes(attribute.String("order.outcome", res.Outcome.String()))
	}
	endSpan(span, err)
	return res, err
}

func (h *Handler) lookup(ctx context.Context, orderID string) (orders.Record, error) {
	ctx, span := h.tr.Start(ctx, "order.lookup", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	row, err := h.store.Get(ctx, orderID)
	switch {
	case err == nil:
		span.SetAttributes(attribute.Bool("order.found", true), attribute.String("order.outcome", string(row.Status)))
	case errors.Is(err, orders.ErrNotFound):
		// The usual case: a new order.
		span.SetAttributes(attribute.Bool("order.found", false))
	default:
		endSpan(span, err)
	}
	return row, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
