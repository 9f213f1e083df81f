package stockgate

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockgate/stockgate/internal/orders"
)

// pollChunk bounds the ids one poll query asks about.
const pollChunk = 5000

// pollTimeout bounds one poll query; a slow Postgres delays the next tick
// rather than piling queries up.
const pollTimeout = 5 * time.Second

// poller is Wait's shared reader: one goroutine per client that, each tick,
// asks Postgres once for the rows of every order some Wait (or Confirm or
// Cancel) is waiting for, however many there are, and hands each row to
// the waiters it ends. An idle poller makes no query.
type poller struct {
	rows     func(ctx context.Context, ids []string) (map[string]orders.Record, error)
	interval time.Duration

	mu      sync.Mutex
	waiters map[string][]waiter
	closed  bool

	kick chan struct{} // a first waiter wakes an idle poller
	stop chan struct{}
	done chan struct{}

	queries atomic.Int64 // poll queries made, for the tests' cost checks
}

// waiter is one wait: it ends with the first row read that until accepts
// (any row when until is nil).
type waiter struct {
	ch    chan orders.Record
	until func(orders.Record) bool
}

func startPoller(rows func(context.Context, []string) (map[string]orders.Record, error), interval time.Duration) *poller {
	p := &poller{
		rows: rows, interval: interval,
		waiters: map[string][]waiter{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.run()
	return p
}

// wait blocks until orderID's row is read and until accepts it (any row
// when until is nil), ctx ends, or the poller closes.
func (p *poller) wait(ctx context.Context, orderID string, until func(orders.Record) bool) (orders.Record, error) {
	ch := make(chan orders.Record, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return orders.Record{}, ErrClosed
	}
	p.waiters[orderID] = append(p.waiters[orderID], waiter{ch: ch, until: until})
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	select {
	case rec := <-ch:
		return rec, nil
	case <-ctx.Done():
		p.forget(orderID, ch)
		return orders.Record{}, ctx.Err()
	case <-p.stop:
		return orders.Record{}, ErrClosed
	}
}

func (p *poller) forget(orderID string, ch chan orders.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	left := slices.DeleteFunc(p.waiters[orderID], func(w waiter) bool { return w.ch == ch })
	if len(left) == 0 {
		delete(p.waiters, orderID)
		return
	}
	p.waiters[orderID] = left
}

func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
}

func (p *poller) run() {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		if p.idle() {
			select {
			case <-p.kick:
			case <-p.stop:
				return
			}
		}
		select {
		case <-tick.C:
		case <-p.stop:
			return
		}
		p.poll()
	}
}

func (p *poller) idle() bool { return p.count() == 0 }

func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// poll reads the rows of every waited-for order, pollChunk ids a query. A
// failed query leaves its waiters waiting for the next tick.
func (p *poller) poll() {
	p.mu.Lock()
	ids := slices.Collect(maps.Keys(p.waiters))
	p.mu.Unlock()
	for chunk := range slices.Chunk(ids, pollChunk) {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		found, err := p.rows(ctx, chunk)
		cancel()
		p.queries.Add(1)
		if err != nil {
			continue
		}
		p.mu.Lock()
		for id, rec := range found {
			left := p.waiters[id][:0]
			for _, w := range p.waiters[id] {
				if w.until != nil && !w.until(rec) {
					left = append(left, w)
					continue
				}
				w.ch <- rec // buffered, and each channel is sent to once
			}
			if len(left) == 0 {
				delete(p.waiters, id)
			} else {
				p.waiters[id] = left
			}
		}
		p.mu.Unlock()
	}
}
