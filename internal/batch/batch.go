// Package batch turns concurrent calls into batches, so that one round trip
// (one statement and one commit in Postgres, one script call in Redis) can
// serve many orders at high load while a lone call pays nothing.
//
// It knows nothing of what a batch does: the caller's exec function runs it.
// It must not retry, reorder results or keep a goroutine of its own.
package batch

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config.
const (
	DefaultMaxBatch    = 128
	DefaultMaxInflight = 4
	DefaultTimeout     = 10 * time.Second
)

// Config bounds a Batcher. The zero value is usable.
type Config struct {
	// MaxBatch is the most requests one exec call gets. Default DefaultMaxBatch.
	MaxBatch int
	// MaxInflight is the most exec calls running at once. A call that finds
	// fewer running becomes a leader and runs a batch at once, so a batch
	// never waits to fill. Default DefaultMaxInflight.
	MaxInflight int
	// Timeout bounds one exec call, which runs detached from its callers'
	// contexts (it carries other callers' requests). Default DefaultTimeout.
	Timeout time.Duration
}

// Batcher batches calls to exec without a goroutine of its own: a caller
// that finds fewer than MaxInflight batches running becomes a leader and
// runs batches until nothing is pending; everyone else waits for their
// result. At low load each call is a batch of one; at high load, calls that
// arrive while batches run pile up into the next one.
type Batcher[Req, Res any] struct {
	cfg Config
	// exec runs one batch and returns one result per request, in order.
	exec func(ctx context.Context, reqs []Req) []Res

	mu       sync.Mutex
	pending  []*call[Req, Res]
	inflight int
	batches  atomic.Int64
}

type call[Req, Res any] struct {
	ctx  context.Context
	req  Req
	done chan Res
}

// New returns a Batcher over exec, which must return exactly one result per
// request, in the order of the requests.
func New[Req, Res any](cfg Config, exec func(ctx context.Context, reqs []Req) []Res) *Batcher[Req, Res] {
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, DefaultMaxBatch)
	cfg.MaxInflight = cmp.Or(cfg.MaxInflight, DefaultMaxInflight)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	return &Batcher[Req, Res]{cfg: cfg, exec: exec}
}

// Timeout is the longest one batch may run after its request was taken:
// how long after a caller's deadline its request can still take effect is
// at most this (see Do).
func (b *Batcher[Req, Res]) Timeout() time.Duration { return b.cfg.Timeout }

// Batches counts the exec calls made so far, for tests and profiling.
func (b *Batcher[Req, Res]) Batches() int64 { return b.batches.Load() }

// Do adds req to the next batch and waits for its result. When ctx ends
// first it returns ok=false. A request whose caller has given up before its
// batch started is dropped, never run; one already running completes for
// the others, so exec must be idempotent per request.
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (res Res, ok bool) {
	c := &call[Req, Res]{ctx: ctx, req: req, done: make(chan Res, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := b.inflight < b.cfg.MaxInflight
	if lead {
		b.inflight++
	}
	b.mu.Unlock()
	if lead {
		b.lead(context.WithoutCancel(ctx))
	}
	select {
	case r := <-c.done:
		return r, true
	case <-ctx.Done():
		return res, false
	}
}

func (b *Batcher[Req, Res]) lead(ctx context.Context) {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		n := min(len(b.pending), b.cfg.MaxBatch)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.mu.Unlock()

		// A caller that has given up must not have its request run later:
		// an order's confirmed row must never land after its handler's
		// deadline, or the rebuild fence (orderstore.WriteFence) would not
		// hold.
		batch = slices.DeleteFunc(batch, func(c *call[Req, Res]) bool { return c.ctx.Err() != nil })
		if len(batch) == 0 {
			continue
		}
		reqs := make([]Req, len(batch))
		for i, c := range batch {
			reqs[i] = c.req
		}
		b.batches.Add(1)
		bctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		results := b.exec(bctx, reqs)
		cancel()
		for i, c := range batch {
			c.done <- results[i]
		}
	}
}
