package stockgate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/telemetry"
)

// Defaults for Config.
const (
	DefaultRedisURL = config.DefaultRedisURL
	// DefaultRetention keeps a finished task this long: meanwhile a second
	// Submit of the same order id is refused, and Status can tell a
	// submitted order from one never seen.
	DefaultRetention = orders.DefaultRetention
	// DefaultMaxRetry is how many times a worker retries an order after an
	// infrastructure error before recording it failed.
	DefaultMaxRetry = orders.DefaultMaxRetry
	// DefaultPollInterval is how often Wait's shared poller reads the rows
	// of every order some Wait is waiting for.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultMaxHold is the workers' default --max-hold: the longest
	// checkout hold an order may ask for.
	DefaultMaxHold = orders.DefaultMaxHold
)

// Config configures a Client. Only DatabaseURL has no default, and only
// Status and Wait need it.
type Config struct {
	// RedisURL is the workers' Redis: redis:// or rediss:// (TLS, verified
	// against the system roots or SSL_CERT_FILE), with the DB number, as in
	// REDIS_URL. Default DefaultRedisURL. With RedisCluster, the seed
	// nodes of the cluster, as in REDIS_URL with REDIS_CLUSTER=true:
	// redis://[user:password@]host:port?addr=host2:port2&addr=host3:port3.
	RedisURL string
	// RedisCluster says the workers' Redis is a Redis Cluster, as
	// REDIS_CLUSTER=true does for them.
	RedisCluster bool
	// DatabaseURL is the workers' Postgres, as in DATABASE_URL (libpq
	// parameters such as sslmode=verify-full apply). Without it, Status and
	// Wait return ErrNoDatabase.
	DatabaseURL string
	// Retention is how long a finished task is kept. Default DefaultRetention.
	Retention time.Duration
	// MaxRetry is the task's retry budget. Default DefaultMaxRetry.
	MaxRetry int
	// PollInterval is the tick of Wait's shared poller. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// QueueShards is the workers' QUEUE_SHARDS: with N > 1 an order goes on
	// queue orders-K, K = FNV-1a-32(order id) mod N. Default 1, the queue
	// orders.
	QueueShards int

	// MaxHold is the longest checkout hold Submit lets through, the
	// workers' --max-hold. Default DefaultMaxHold.
	MaxHold time.Duration
}

func (c *Config) validate() error {
	switch {
	case c.Retention < 0:
		return fmt.Errorf("stockgate config: Retention %v must not be negative", c.Retention)
	case c.MaxRetry < 0:
		return fmt.Errorf("stockgate config: MaxRetry %d must not be negative", c.MaxRetry)
	case c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < time.Millisecond):
		return fmt.Errorf("stockgate config: PollInterval %v must be at least 1ms", c.PollInterval)
	case c.QueueShards != 0 && orders.CheckQueueShards(c.QueueShards) != nil:
		return fmt.Errorf("stockgate config: QueueShards: %w", orders.CheckQueueShards(c.QueueShards))
	case c.MaxHold != 0 && (c.MaxHold < orders.MinHold || c.MaxHold > orders.MaxHoldLimit):
		return fmt.Errorf("stockgate config: MaxHold %v must be from %v to %v", c.MaxHold, orders.MinHold, orders.MaxHoldLimit)
	}
	c.RedisURL = cmp.Or(c.RedisURL, DefaultRedisURL)
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	c.MaxRetry = cmp.Or(c.MaxRetry, DefaultMaxRetry)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.QueueShards = cmp.Or(c.QueueShards, orders.DefaultQueueShards)
	c.MaxHold = cmp.Or(c.MaxHold, DefaultMaxHold)
	return nil
}

// Client submits orders and reads their outcomes. It is safe for
// concurrent use; make one per process and Close it.
type Client struct {
	cfg       Config
	rdb       redis.UniversalClient
	queue     *asynq.Client
	inspector *asynq.Inspector
	gate      *stock.Gate
	pool      *pgxpool.Pool     // nil without DatabaseURL
	store     *orderstore.Store // nil without DatabaseURL
	waits     *poller           // nil without DatabaseURL
}

// NewClient connects to Redis and, when cfg names it, Postgres, and checks
// that they answer. A failure is one line naming the service and its URL,
// with the password hidden.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rdb, err := conn.Redis(ctx, cfg.RedisURL, cfg.RedisCluster)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:       cfg,
		rdb:       rdb,
		queue:     asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		gate:      stock.New(rdb, stock.Config{}),
	}
	if cfg.DatabaseURL != "" {
		if c.pool, err = conn.Postgres(ctx, cfg.DatabaseURL, nil); err != nil {
			_ = rdb.Close()
			return nil, err
		}
		c.store = orderstore.New(c.pool)
		c.waits = startPoller(c.store.GetMany, cfg.PollInterval)
	}
	return c, nil
}

// Close ends every Wait (each returns its pending status and ErrClosed) and
// closes the connections.
func (c *Client) Close() error {
	if c.waits != nil {
		c.waits.close()
	}
	if c.pool != nil {
		c.pool.Close()
	}
	return c.rdb.Close()
}

// Ping checks that Redis and, when configured, Postgres answer.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if c.pool != nil {
		if err := c.pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	return nil
}

// queueFor is the queue an order travels on (orders.QueueFor).
func (c *Client) queueFor(orderID string) string { return orders.QueueFor(orderID, c.cfg.QueueShards) }

// Submit validates o and enqueues it. A refused order is an *InvalidError
// and nothing is enqueued. An order id submitted before, whose task is
// still queued, running or retained, gets ErrDuplicate when the order is the
// same (a retry) and ErrConflict when it is not. A Redis that reached its
// maxmemory refuses the order with ErrRedisFull. Once Submit returns nil the
// order is in Redis: a worker decides it, and Wait tells the outcome.
//
// The span "order:place publish" is a child of ctx's span, and the workers'
// spans are its children: one trace from the storefront to the row.
func (c *Client) Submit(ctx context.Context, o Order) error {
	io := o.internal()
	queue := c.queueFor(o.OrderID)
	ctx, span := telemetry.StartProducerSpan(ctx, orders.TaskType, queue, o.OrderID)
	defer span.End()
	span.SetAttributes(attribute.String("order.id", o.OrderID), attribute.Int("order.lines", len(o.Lines)))
	fail := func(err error) error {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	t, err := orders.NewTask(ctx, io, orders.TaskOptions{Retention: c.cfg.Retention, MaxRetry: c.cfg.MaxRetry, Queue: queue})
	if err == nil {
		err = io.CheckHold(c.cfg.MaxHold)
	}
	if err != nil {
		return fail(publicError(err))
	}
	_, err = c.queue.EnqueueContext(ctx, t)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		err = c.duplicate(ctx, io, queue)
		span.SetAttributes(attribute.String("order.outcome", "duplicate"))
		return fail(err)
	case isOOM(err):
		span.RecordError(err)
		return fail(fmt.Errorf("enqueue %s: %w", o.OrderID, ErrRedisFull))
	case err != nil:
		span.RecordError(err)
		return fail(fmt.Errorf("enqueue %s: %w", o.OrderID, err))
	}
	return nil
}

// isOOM reports a Redis refusal for want of memory (maxmemory reached under
// noeviction). Asynq keeps the Redis error in the chain for single
// commands, but only its text for a script's.
func isOOM(err error) bool {
	return err != nil && (redis.IsOOMError(err) || strings.Contains(err.Error(), "OOM command not allowed"))
}

// duplicate tells a retry of the same order (ErrDuplicate) from another
// order under a taken id (ErrConflict), by the payload hash of the task
// that holds the id, or else of the row. When neither can be read any
// more (the task's retention ended a moment ago) it says ErrDuplicate.
func (c *Client) duplicate(ctx context.Context, o orders.Order, queue string) error {
	dup := fmt.Errorf("%w: %s", ErrDuplicate, o.OrderID)
	standing := ""
	if info, err := c.inspector.GetTaskInfo(queue, o.OrderID); err == nil {
		if prev, derr := orders.Decode(info.Payload); derr == nil {
			standing = prev.Hash()
		}
	} else if c.store != nil {
		if rec, gerr := c.store.Get(ctx, o.OrderID); gerr == nil {
			standing = rec.PayloadHash
		}
	}
	if standing != "" && standing != o.Hash() {
		return &conflictError{orderID: o.OrderID}
	}
	return dup
}

// Status returns the order's state: its row once a worker decided it, and
// StatePending, with the submitted lines, while its task waits or runs.
//
// An id with neither a row nor a task is ErrNotFound. The task is what
// tells a submitted order from one never seen until the row lands, and it
// stays while queued or running and for Config.Retention after; an order's
// row is written before its task finishes, so a submitted order is never
// reported ErrNotFound, with one exception: a task lost with Redis's data
// (docs/reliability.md) is ErrNotFound until it is submitted again.
func (c *Client) Status(ctx context.Context, orderID string) (Status, error) {
	if c.store == nil {
		return Status{}, ErrNoDatabase
	}
	if orders.CheckID(orderID) != nil {
		return Status{}, fmt.Errorf("%w: order %q", ErrNotFound, orderID)
	}
	if st, ok, err := c.row(ctx, orderID); ok || err != nil {
		return st, err
	}
	info, err := c.inspector.GetTaskInfo(c.queueFor(orderID), orderID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		// The task may have finished, and its retention ended, since the
		// row was read: read it again before saying never.
		if st, ok, err := c.row(ctx, orderID); ok || err != nil {
			return st, err
		}
		return Status{}, fmt.Errorf("%w: order %s", ErrNotFound, orderID)
	case err != nil:
		return Status{}, fmt.Errorf("order %s: %w", orderID, err)
	}
	o, err := orders.Decode(info.Payload)
	if err != nil {
		// A payload the workers will reject; its row says so shortly.
		o = orders.Order{OrderID: orderID}
	}
	return pendingStatus(o), nil
}

// row is the order's decided status, if it has a row.
func (c *Client) row(ctx context.Context, orderID string) (Status, bool, error) {
	rec, err := c.store.Get(ctx, orderID)
	switch {
	case errors.Is(err, orders.ErrNotFound):
		return Status{}, false, nil
	case err != nil:
		return Status{}, false, err
	}
	return statusOfRecord(rec), true, nil
}

// Wait returns the order's status once it is decided, or held for
// checkout (StateHeld: Confirm or Cancel it next). When ctx ends first it
// returns the pending status and ctx's error; an order never submitted is
// ErrNotFound at once.
//
// Waits are cheap: every Wait of a client shares one poller, which reads the
// rows of all the orders being waited for in one query per PollInterval,
// and each row once, the tick it lands.
func (c *Client) Wait(ctx context.Context, orderID string) (Status, error) {
	st, err := c.Status(ctx, orderID)
	if err != nil || st.Decided() {
		return st, err
	}
	rec, err := c.waits.wait(ctx, orderID, nil)
	if err != nil {
		return st, err
	}
	return statusOfRecord(rec), nil
}

// Waiting is how many orders some Wait is waiting for right now.
func (c *Client) Waiting() int {
	if c.waits == nil {
		return 0
	}
	return c.waits.count()
}

// Stock returns a SKU's units, or ErrNotFound for a SKU never stocked.
func (c *Client) Stock(ctx context.Context, sku string) (Stock, error) {
	if stock.CheckSKU(sku) != nil {
		return Stock{}, fmt.Errorf("%w: sku %q", ErrNotFound, sku)
	}
	lv, err := c.gate.Show(ctx, sku)
	if err != nil {
		return Stock{}, err
	}
	if len(lv) != 1 || !lv[0].Stocked {
		return Stock{}, fmt.Errorf("%w: sku %s", ErrNotFound, sku)
	}
	return Stock{SKU: sku, Available: lv[0].Available, Held: lv[0].Held, Sold: lv[0].Sold}, nil
}
