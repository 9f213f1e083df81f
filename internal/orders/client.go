package orders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/stockgate/stockgate/internal/telemetry"
)

// Defaults for ClientConfig.
const (
	// DefaultRetention keeps a finished task, so a re-enqueue of the same
	// order id is refused by Asynq for this long.
	DefaultRetention = 24 * time.Hour
	DefaultMaxRetry  = 10
)

// ErrDuplicate means a task for this order id is still queued, running or
// retained: the order was already submitted.
var ErrDuplicate = errors.New("order already submitted")

// ClientConfig configures a Client. The zero value is usable.
type ClientConfig struct {
	Retention time.Duration // default DefaultRetention
	MaxRetry  int           // default DefaultMaxRetry
}

// Client is what a Go storefront backend uses to place orders. It is safe
// for concurrent use.
type Client struct {
	ac  *asynq.Client
	cfg ClientConfig
}

// NewClient returns a Client that enqueues through ac. The caller owns ac
// and closes it.
func NewClient(ac *asynq.Client, cfg ClientConfig) *Client {
	cfg.Retention = cmp.Or(cfg.Retention, DefaultRetention)
	cfg.MaxRetry = cmp.Or(cfg.MaxRetry, DefaultMaxRetry)
	return &Client{ac: ac, cfg: cfg}
}

// NewTask builds the order:place task for o: payload, TaskID = order id,
// queue, retention and retries, with ctx's trace context in its headers.
// The order is validated first, so a bad order never reaches the queue.
func (c *Client) NewTask(ctx context.Context, o Order) (*asynq.Task, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	payload, err := Encode(o)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{}
	telemetry.InjectHeaders(ctx, headers)
	return asynq.NewTaskWithHeaders(TaskType, payload, headers,
		asynq.TaskID(o.OrderID), asynq.Queue(Queue),
		asynq.Retention(c.cfg.Retention), asynq.MaxRetry(c.cfg.MaxRetry)), nil
}

// Submit enqueues o. It returns ErrDuplicate when the order id was already
// submitted and its task is still queued, running or retained.
func (c *Client) Submit(ctx context.Context, o Order) (*asynq.TaskInfo, error) {
	ctx, span := telemetry.StartProducerSpan(ctx, TaskType, Queue, o.OrderID)
	defer span.End()
	span.SetAttributes(attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines)))
	t, err := c.NewTask(ctx, o)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	info, err := c.ac.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		span.SetAttributes(attribute.String("order.outcome", "duplicate"))
		span.SetStatus(codes.Error, "duplicate order id")
		return nil, fmt.Errorf("%w: %s", ErrDuplicate, o.OrderID)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("enqueue %s: %w", o.OrderID, err)
	}
	return info, nil
}
