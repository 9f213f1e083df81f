package orders

import (
	"cmp"
	"context"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/telemetry"
)

// Defaults for TaskOptions.
const (
	// DefaultRetention keeps a finished task, so a re-enqueue of the same
	// order id is refused by Asynq for this long.
	DefaultRetention = 24 * time.Hour
	DefaultMaxRetry  = 10
)

// TaskOptions are the producer's choices for an order:place task. The zero
// value is usable.
type TaskOptions struct {
	Retention time.Duration // default DefaultRetention
	MaxRetry  int           // default DefaultMaxRetry
	// Queue is the queue the task goes on; default Queue. With queue
	// shards it is QueueFor's choice.
	Queue string
}

// NewTask builds the order:place task for o: payload, TaskID = order id,
// queue, retention and retries, with ctx's trace context in its headers
// (README "Contracts"). The order is validated first, so a bad order never
// reaches the queue. It builds the task only: the producer (the public
// stockgate.Client) enqueues it.
func NewTask(ctx context.Context, o Order, opts TaskOptions) (*asynq.Task, error) {
	payload, err := Encode(o)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{}
	telemetry.InjectHeaders(ctx, headers)
	return asynq.NewTaskWithHeaders(TaskType, payload, headers,
		asynq.TaskID(o.OrderID), asynq.Queue(cmp.Or(opts.Queue, Queue)),
		asynq.Retention(cmp.Or(opts.Retention, DefaultRetention)),
		asynq.MaxRetry(cmp.Or(opts.MaxRetry, DefaultMaxRetry))), nil
}
