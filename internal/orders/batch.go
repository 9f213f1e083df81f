package orders

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// batcher turns concurrent calls into batches without a goroutine of its
// own: a caller that finds fewer than maxInflight batches running becomes a
// leader and runs batches until nothing is pending; everyone else waits for
// their result. At low load each call is a batch of one and pays nothing; at
// high load, calls that arrive while batches run pile up into the next one,
// so one round trip and one commit serve many orders.
type batcher[Req, Res any] struct {
	maxBatch    int
	maxInflight int
	timeout     time.Duration
	// exec runs one batch and returns one result per request, in order.
	exec func(ctx context.Context, reqs []Req) []Res

	mu       sync.Mutex
	pending  []*call[Req, Res]
	inflight int
	batches  atomic.Int64 // batches run, for tests and profiling
}

type call[Req, Res any] struct {
	ctx  context.Context
	req  Req
	done chan Res
}

// do adds req to the next batch and waits for its result. When ctx ends
// first it returns ok=false; the batch still runs to completion for the
// others, so callers must be idempotent (Decide and Get are).
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (res Res, ok bool) {
	c := &call[Req, Res]{ctx: ctx, req: req, done: make(chan Res, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := b.inflight < b.maxInflight
	if lead {
		b.inflight++
	}
	b.mu.Unlock()
	if lead {
		// The batch must not die with this caller's context: it carries
		// other callers' requests.
		b.lead(context.WithoutCancel(ctx))
	}
	select {
	case r := <-c.done:
		return r, true
	case <-ctx.Done():
		return res, false
	}
}

func (b *batcher[Req, Res]) lead(ctx context.Context) {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		n := min(len(b.pending), b.maxBatch)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.mu.Unlock()

		// A caller that has given up must not have its request run later:
		// an order's confirmed row must never land after its handler's
		// deadline, or stockctl rebuild's fence (which waits out that
		// deadline) would not hold.
		batch = slices.DeleteFunc(batch, func(c *call[Req, Res]) bool { return c.ctx.Err() != nil })
		if len(batch) == 0 {
			continue
		}

		reqs := make([]Req, len(batch))
		for i, c := range batch {
			reqs[i] = c.req
		}
		b.batches.Add(1)
		bctx, cancel := context.WithTimeout(ctx, b.timeout)
		results := b.exec(bctx, reqs)
		cancel()
		for i, c := range batch {
			c.done <- results[i]
		}
	}
}
