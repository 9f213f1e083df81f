package orders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/failpoint"
	"github.com/stockgate/stockgate/internal/stock"
)

// Reasons recorded beside a status. They are machine-readable: dashboards
// and storefronts match on them. Record.Detail carries the human part.
const (
	ReasonOutOfStock       = "out_of_stock"
	ReasonUnknownSKU       = "unknown_sku"
	ReasonRateLimited      = "rate_limited"
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonHoldExpired      = "hold_expired"
)

// ErrStockNotLoaded is returned (and retried) when an order names a SKU
// that Postgres's catalogue has but Redis has no counters for.
var ErrStockNotLoaded = errors.New("stock not loaded")

const instrumentation = "github.com/stockgate/stockgate/orders"

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
	// RateLimit is the most orders one customer may place per RateWindow;
	// 0 turns the per-customer limit off.
	RateLimit  int
	RateWindow time.Duration
	// Now is the clock; tests replace it. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger

	// hook, set only by this package's tests, runs at named steps and may
	// inject a failure there.
	hook func(step string) error
}

func (c *HandlerConfig) validate() error {
	if c.RateLimit < 0 {
		return fmt.Errorf("rate limit %d must be >= 0", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateWindow < time.Millisecond {
		return errors.New("rate limit needs a window of at least 1ms")
	}
	if c.HoldTTL < 2*c.HandlerTimeout {
		return fmt.Errorf("hold ttl %v must be at least twice the handler timeout %v", c.HoldTTL, c.HandlerTimeout)
	}
	return nil
}

// Handler processes order:place tasks: it ties the stock gate to the order
// store following the flow in DESIGN.md. The orders row is the arbiter: the
// first terminal write wins and every later step follows it.
type Handler struct {
	gate  *stock.Gate
	store *Store
	cfg   HandlerConfig
	log   *slog.Logger
	tr    trace.Tracer
	m     *handlerMetrics
}

// NewHandler returns a Handler.
func NewHandler(gate *stock.Gate, store *Store, cfg HandlerConfig) (*Handler, error) {
	cfg.HoldTTL = cmp.Or(cfg.HoldTTL, DefaultHoldTTL)
	cfg.HandlerTimeout = cmp.Or(cfg.HandlerTimeout, DefaultHandlerTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newHandlerMetrics()
	if err != nil {
		return nil, err
	}
	return &Handler{
		gate:  gate,
		store: store,
		cfg:   cfg,
		log:   cmp.Or(cfg.Logger, slog.Default()),
		tr:    otel.Tracer(instrumentation),
		m:     m,
	}, nil
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
		var inv *InvalidError
		if !errors.As(err, &inv) {
			return err
		}
		if inv.OrderID == "" {
			h.m.decided(ctx, "archived", "invalid", start, h.cfg.Now())
			h.log.WarnContext(ctx, "order archived: no usable order id", "reason", inv.Error())
			return fmt.Errorf("%s: %w", inv.Error(), asynq.SkipRetry)
		}
		return h.reject(ctx, Order{OrderID: inv.OrderID}, inv.Error(), "", start)
	}
	if err := h.process(ctx, o, start); err != nil {
		return err
	}
	// The order is decided and its holds follow the row; Asynq has yet to
	// mark the task done.
	return h.fail("before_ack")
}

func (h *Handler) validate(ctx context.Context, payload []byte) (Order, error) {
	_, span := h.tr.Start(ctx, "order.validate")
	defer span.End()
	o, err := Decode(payload)
	if err != nil {
		span.SetAttributes(attribute.String("order.outcome", "invalid"))
		span.SetStatus(codes.Error, err.Error())
		return Order{}, err
	}
	// Decode has merged duplicate SKUs: from here on each SKU is one line.
	span.SetAttributes(attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines)))
	return o, nil
}

func (h *Handler) process(ctx context.Context, o Order, start time.Time) error {
	attempt, _ := asynq.GetRetryCount(ctx)
	maxRetry, hasMax := asynq.GetMaxRetry(ctx)
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.String("order.id", o.OrderID),
		attribute.Int("order.lines", len(o.Lines)),
		attribute.Int("order.attempt", attempt),
	)

	err := h.decide(ctx, o, start)
	if err == nil || !hasMax || attempt < maxRetry {
		return err
	}
	// Out of retries: a failed row unless one stands, then the compensating
	// restock through follow. The row comes first because an earlier attempt,
	// or this one, may have confirmed the order before failing: its holds
	// must then be committed, never given back. If either step fails too, the
	// hold's deadline still hands the order to the sweeper.
	h.log.ErrorContext(ctx, "order retries exhausted", "order_id", o.OrderID, "attempt", attempt, "err", err)
	row, inserted, derr := h.persist(ctx, Record{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Status: StatusFailed,
		Reason: ReasonRetriesExhausted, Detail: truncate(err.Error(), 200),
		PlacedAt: o.PlacedAt, PayloadHash: o.Hash(), Lines: o.Lines,
	})
	if derr != nil {
		return errors.Join(err, derr)
	}
	if inserted {
		h.m.decided(ctx, string(row.Status), row.Reason, start, h.cfg.Now())
	}
	return h.follow(ctx, row, o.SKUs())
}

// decide runs steps 2 to 6 of the flow. A nil error means the order's
// terminal row stands and its holds follow it.
func (h *Handler) decide(ctx context.Context, o Order, start time.Time) error {
	// Step 2: a row already stands (a redelivery, a retry after a crash, or
	// the sweeper got there first). Reserving now could take stock again for
	// an order whose tombstone has expired, so follow the row instead.
	row, err := h.lookup(ctx, o.OrderID)
	switch {
	case err == nil:
		if row.PayloadHash != "" && row.PayloadHash != o.Hash() {
			h.m.conflicts.Add(ctx, 1)
			h.log.WarnContext(ctx, "order conflict: another payload with this id already stands; dropping this one",
				"order_id", o.OrderID, "status", row.Status)
		}
		return h.follow(ctx, row, o.SKUs())
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("look up order: %w", err)
	}

	// Step 3: per-customer rate limit.
	if h.cfg.RateLimit > 0 {
		if err := h.rateLimit(ctx, o); errors.Is(err, stock.ErrRateLimited) {
			return h.reject(ctx, o, ReasonRateLimited, "", start)
		} else if err != nil {
			return err
		}
	}

	// Step 4: reserve every line in one script call.
	if err := h.reserve(ctx, o); err != nil {
		var oos *stock.OutOfStockError
		var ns *stock.NotStockedError
		switch {
		case errors.As(err, &oos):
			return h.reject(ctx, o, ReasonOutOfStock, fmt.Sprintf("%s has %d available", oos.SKU, oos.Available), start)
		case errors.As(err, &ns):
			// Fail closed: a SKU the catalogue knows but Redis does not
			// means Redis lost its counters. Retry until stockctl rebuild
			// restores them; rejecting would turn data loss into sold-out.
			known, cerr := h.store.Catalogued(ctx, ns.SKU)
			if cerr != nil {
				return errors.Join(err, cerr)
			}
			if known {
				h.log.WarnContext(ctx, "stock not loaded in Redis for a catalogued SKU; retrying (run stockctl rebuild if Redis lost its data)",
					"order_id", o.OrderID, "sku", ns.SKU)
				return fmt.Errorf("%w: %s is catalogued in Postgres but has no counters in Redis", ErrStockNotLoaded, ns.SKU)
			}
			return h.reject(ctx, o, ReasonUnknownSKU, ns.SKU+" was never stocked", start)
		case errors.Is(err, stock.ErrConflict):
			// Another payload with this id holds different lines right now.
			// It decides the row; this one is dropped, not retried.
			h.m.conflicts.Add(ctx, 1)
			h.log.WarnContext(ctx, "order conflict: this id holds other lines; dropping this payload", "order_id", o.OrderID)
			return nil
		case errors.Is(err, stock.ErrInvalid):
			return h.reject(ctx, o, "invalid: "+err.Error(), "", start)
		}
		return err
	}
	if err := h.fail("after_reserve"); err != nil {
		return err
	}

	// Step 5: record confirmed, if no row stands yet.
	row, inserted, err := h.persist(ctx, Record{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Status: StatusConfirmed,
		PlacedAt: o.PlacedAt, PayloadHash: o.Hash(), Lines: o.Lines,
	})
	if err != nil {
		return err
	}
	if inserted {
		h.m.decided(ctx, string(row.Status), row.Reason, start, h.cfg.Now())
	}
	if err := h.fail("after_persist"); err != nil {
		return err
	}
	// Step 6: the holds follow the row: commit ours, or do what the winner says.
	return h.follow(ctx, row, o.SKUs())
}

// reject records the order rejected, unless a row already stands, and then
// makes its holds follow the row that stands. The row comes first because
// holds are keyed by order id, not by delivery: giving them back first could
// take the hold of a duplicate delivery (or another payload with this id)
// that is confirming at the same moment. A crash between the two leaves a
// hold on a rejected order, which the retry (step 2) or the sweeper gives back.
func (h *Handler) reject(ctx context.Context, o Order, reason, detail string, start time.Time) error {
	rec := Record{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Status: StatusRejected,
		Reason: reason, Detail: detail, PlacedAt: o.PlacedAt, Lines: o.Lines,
	}
	if len(o.Lines) > 0 {
		rec.PayloadHash = o.Hash()
	}
	row, inserted, err := h.persist(ctx, rec)
	if err != nil {
		return err
	}
	if inserted {
		h.m.decided(ctx, string(row.Status), row.Reason, start, h.cfg.Now())
		// Debug, not info: a sold-out sale rejects thousands a second, and
		// the row already says why.
		h.log.DebugContext(ctx, "order rejected", "order_id", o.OrderID, "reason", reason, "detail", detail)
	}
	return h.follow(ctx, row, o.SKUs())
}

// follow makes the order's holds agree with the row that stands: commit when
// it is confirmed, release otherwise. Both are idempotent. Holds on SKUs the
// standing row does not list belong to a dropped payload and are released.
func (h *Handler) follow(ctx context.Context, row Record, payloadSKUs []string) error {
	rowSKUs, extra := splitByRow(row, payloadSKUs)
	if row.Status != StatusConfirmed {
		if all := append(rowSKUs, extra...); len(all) > 0 {
			_, err := h.release(ctx, row.OrderID, all)
			return err
		}
		return nil
	}
	if len(extra) > 0 {
		if _, err := h.release(ctx, row.OrderID, extra); err != nil {
			return err
		}
	}
	if err := h.fail("before_commit"); err != nil {
		return err
	}
	return h.commit(ctx, row.OrderID, rowSKUs)
}

// fail marks a named step of the flow: the chaos suite's failpoints (only in
// binaries built with the failpoints tag) and this package's test hook can
// crash, stall or fail the attempt there.
// splitByRow splits the SKUs an order may hold into the standing row's own
// SKUs and the extra ones, which only a dropped payload with this id could
// have taken and which therefore always go back.
func splitByRow(row Record, payloadSKUs []string) (rowSKUs, extra []string) {
	rowSKUs = make([]string, 0, len(row.Lines))
	for _, l := range row.Lines {
		rowSKUs = append(rowSKUs, l.SKU)
	}
	for _, s := range payloadSKUs {
		if !slices.Contains(rowSKUs, s) {
			extra = append(extra, s)
		}
	}
	return rowSKUs, extra
}

func (h *Handler) fail(step string) error {
	failpoint.Inject(step)
	if h.cfg.hook == nil {
		return nil
	}
	return h.cfg.hook(step)
}

func (h *Handler) rateLimit(ctx context.Context, o Order) error {
	ctx, span := h.tr.Start(ctx, "order.rate_limit", trace.WithAttributes(attribute.String("order.id", o.OrderID)))
	defer span.End()
	err := h.gate.Allow(ctx, o.CustomerID, h.cfg.RateLimit, h.cfg.RateWindow)
	endSpan(span, err, stock.ErrRateLimited)
	return err
}

func (h *Handler) reserve(ctx context.Context, o Order) error {
	ctx, span := h.tr.Start(ctx, "order.reserve", trace.WithAttributes(
		attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines))))
	defer span.End()
	t0 := time.Now()
	outcome, err := h.gate.Reserve(ctx, o.OrderID, o.StockLines(), h.cfg.Now().Add(h.cfg.HoldTTL))
	h.m.reserveSeconds.Record(ctx, time.Since(t0).Seconds())
	if err == nil {
		span.SetAttributes(attribute.String("order.outcome", outcome.String()))
	}
	endSpan(span, err, stock.ErrOutOfStock, stock.ErrNotStocked, stock.ErrConflict)
	return err
}

func (h *Handler) lookup(ctx context.Context, orderID string) (Record, error) {
	ctx, span := h.tr.Start(ctx, "order.lookup", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	row, err := h.store.Get(ctx, orderID)
	switch {
	case err == nil:
		span.SetAttributes(attribute.Bool("order.found", true), attribute.String("order.outcome", string(row.Status)))
	case errors.Is(err, ErrNotFound):
		// The usual case: a new order.
		span.SetAttributes(attribute.Bool("order.found", false))
	default:
		endSpan(span, err)
	}
	return row, err
}

func (h *Handler) persist(ctx context.Context, rec Record) (Record, bool, error) {
	ctx, span := h.tr.Start(ctx, "order.persist", trace.WithAttributes(
		attribute.String("order.id", rec.OrderID), attribute.String("order.status", string(rec.Status))))
	defer span.End()
	row, inserted, err := h.store.Decide(ctx, rec)
	endSpan(span, err)
	if err != nil {
		return Record{}, false, fmt.Errorf("record %s: %w", rec.Status, err)
	}
	span.SetAttributes(attribute.Bool("order.inserted", inserted),
		attribute.String("order.outcome", string(row.Status)), attribute.String("order.reason", row.Reason))
	return row, inserted, nil
}

func (h *Handler) commit(ctx context.Context, orderID string, skus []string) error {
	ctx, span := h.tr.Start(ctx, "order.commit", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	res, err := h.gate.Commit(ctx, orderID, skus)
	endSpan(span, err)
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.Int64("stock.units", res.Units))
	if res.Missing > 0 {
		// A confirmed order whose hold is gone means its units went back to
		// available: reconcile will show the drift. Say so loudly.
		h.log.ErrorContext(ctx, "confirmed order has no hold to commit; stock drift likely",
			"order_id", orderID, "missing", res.Missing)
	}
	return nil
}

func (h *Handler) release(ctx context.Context, orderID string, skus []string) (int64, error) {
	ctx, span := h.tr.Start(ctx, "order.release", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	n, err := h.gate.Release(ctx, orderID, skus)
	endSpan(span, err)
	span.SetAttributes(attribute.Int64("stock.units", n))
	return n, err
}

// endSpan marks a span failed unless err is nil or one of the expected
// business outcomes, which are recorded as attributes instead, with the
// same machine-readable reason the order's row gets.
func endSpan(span trace.Span, err error, business ...error) {
	if err == nil {
		return
	}
	for _, b := range business {
		if errors.Is(err, b) {
			span.SetAttributes(attribute.String("order.outcome", "rejected"), attribute.String("order.reason", reasonOf(err)))
			return
		}
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, stock.ErrOutOfStock):
		return ReasonOutOfStock
	case errors.Is(err, stock.ErrNotStocked):
		return ReasonUnknownSKU
	case errors.Is(err, stock.ErrRateLimited):
		return ReasonRateLimited
	case errors.Is(err, stock.ErrConflict):
		return "conflict"
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type handlerMetrics struct {
	orders         metric.Int64Counter
	orderSeconds   metric.Float64Histogram
	reserveSeconds metric.Float64Histogram
	conflicts      metric.Int64Counter
}

func newHandlerMetrics() (*handlerMetrics, error) {
	m := otel.Meter(instrumentation)
	var hm handlerMetrics
	var err error
	if hm.orders, err = m.Int64Counter("stockgate.orders",
		metric.WithDescription("Orders decided, by status and reason")); err != nil {
		return nil, err
	}
	if hm.orderSeconds, err = m.Float64Histogram("stockgate.order.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to decide one order attempt, from the handler's start to its terminal row"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if hm.reserveSeconds, err = m.Float64Histogram("stockgate.reserve.duration", metric.WithUnit("s"),
		metric.WithDescription("Latency of one reserve script call"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)); err != nil {
		return nil, err
	}
	if hm.conflicts, err = m.Int64Counter("stockgate.order.conflicts",
		metric.WithDescription("Payloads dropped because another payload with the same order id stands")); err != nil {
		return nil, err
	}
	return &hm, nil
}

func (m *handlerMetrics) decided(ctx context.Context, status, reason string, start, end time.Time) {
	// "invalid: <what>" would make one series per message: keep the class.
	if strings.HasPrefix(reason, "invalid") {
		reason = "invalid"
	}
	attrs := metric.WithAttributes(attribute.String("status", status), attribute.String("reason", reason))
	m.orders.Add(ctx, 1, attrs)
	m.orderSeconds.Record(ctx, end.Sub(start).Seconds(), attrs)
}
