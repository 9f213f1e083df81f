// Package stockbench measures the ways of taking units of one hot SKU that
// issue 2 compares: a naive GET then DECR, WATCH/MULTI, the stock gate's
// reserve script, and a Postgres conditional UPDATE. Each is a Taker; Run
// drives one with a fixed pool of workers and reports successes, retries
// and latency percentiles.
//
// It is a benchmark harness: nothing in the product imports it. It may use
// Postgres for the comparison, which internal/stock itself must not, and it
// must not change the gate's behaviour to flatter a figure.
package stockbench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
)

// A Taker tries to take one unit of the hot SKU. ok is false when the SKU
// looked sold out; retries counts optimistic-concurrency retries.
type Taker interface {
	Take(ctx context.Context, attempt int) (ok bool, retries int, err error)
}

// Result is one Run.
type Result struct {
	Attempts  int
	Successes int64
	Retries   int64
	Elapsed   time.Duration
	P50, P99  time.Duration
}

// SuccessesPerSec is the rate of units taken over the whole run.
func (r Result) SuccessesPerSec() float64 { return float64(r.Successes) / r.Elapsed.Seconds() }

// AttemptsPerSec is the rate of attempts, successful or not.
func (r Result) AttemptsPerSec() float64 { return float64(r.Attempts) / r.Elapsed.Seconds() }

// Run makes attempts calls of t.Take from workers goroutines started
// together, and stops at the first error.
func Run(ctx context.Context, t Taker, workers, attempts int) (Result, error) {
	var (
		next      atomic.Int64
		successes atomic.Int64
		retries   atomic.Int64
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstErr  error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([][]time.Duration, workers)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			mine := make([]time.Duration, 0, attempts/workers+1)
			<-start
			for {
				i := int(next.Add(1) - 1)
				if i >= attempts || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				ok, r, err := t.Take(ctx, i)
				mine = append(mine, time.Since(t0))
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					break
				}
				if ok {
					successes.Add(1)
				}
				retries.Add(int64(r))
			}
			lat[w] = mine
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return Result{}, firstErr
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return Result{
		Attempts:  attempts,
		Successes: successes.Load(),
		Retries:   retries.Load(),
		Elapsed:   elapsed,
		P50:       percentile(all, 0.50),
		P99:       percentile(all, 0.99),
	}, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// Naive reads the counter, then decrements it if it looked positive: the
// check and the write are two round trips, so concurrent buyers all see the
// last unit and all take it.
type Naive struct {
	RDB *redis.Client
	Key string
}

// Take is GET, then DECR when the GET saw stock.
func (n Naive) Take(ctx context.Context, _ int) (bool, int, error) {
	v, err := n.RDB.Get(ctx, n.Key).Int64()
	if err != nil {
		return false, 0, fmt.Errorf("naive get: %w", err)
	}
	if v < 1 {
		return false, 0, nil
	}
	if err := n.RDB.Decr(ctx, n.Key).Err(); err != nil {
		return false, 0, fmt.Errorf("naive decr: %w", err)
	}
	return true, 0, nil
}

// errSoldOut ends a WATCH transaction without writing.
var errSoldOut = errors.New("sold out")

// Watch is optimistic locking: WATCH the counter, GET it, and DECR in a
// MULTI/EXEC that fails when anyone else wrote the key in between, which on
// a hot key is nearly always.
type Watch struct {
	RDB *redis.Client
	Key string
}

// Take retries the transaction until it commits or sees no stock.
func (w Watch) Take(ctx context.Context, _ int) (bool, int, error) {
	for retries := 0; ; retries++ {
		err := w.RDB.Watch(ctx, func(tx *redis.Tx) error {
			v, err := tx.Get(ctx, w.Key).Int64()
			if err != nil {
				return err
			}
			if v < 1 {
				return errSoldOut
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Decr(ctx, w.Key)
				return nil
			})
			return err
		}, w.Key)
		switch {
		case err == nil:
			return true, retries, nil
		case errors.Is(err, errSoldOut):
			return false, retries, nil
		case errors.Is(err, redis.TxFailedErr):
			continue
		default:
			return false, retries, fmt.Errorf("watch: %w", err)
		}
	}
}

// Script is the stock gate: one single-line Reserve per attempt, each for
// its own order.
type Script struct {
	Gate *stock.Gate
	SKU  string
	// Prefix makes order ids unique across runs on one database.
	Prefix   string
	Deadline time.Time
}

// Take reserves one unit for order Prefix-attempt.
func (s Script) Take(ctx context.Context, attempt int) (bool, int, error) {
	_, err := s.Gate.Reserve(ctx, s.Prefix+strconv.Itoa(attempt), []stock.Line{{SKU: s.SKU, Qty: 1}}, s.Deadline)
	switch {
	case err == nil:
		return true, 0, nil
	case errors.Is(err, stock.ErrOutOfStock):
		return false, 0, nil
	}
	return false, 0, err
}

// Postgres is the conditional UPDATE: the row lock serialises buyers of one
// SKU, and the WHERE clause keeps the count from going below zero.
type Postgres struct {
	Pool *pgxpool.Pool
	SKU  string
}

// PostgresSchema creates the table Postgres takes from.
const PostgresSchema = `CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, qty bigint NOT NULL)`

// Take runs UPDATE stock SET qty = qty - 1 WHERE sku = $1 AND qty >= 1.
func (p Postgres) Take(ctx context.Context, _ int) (bool, int, error) {
	tag, err := p.Pool.Exec(ctx, `UPDATE stock SET qty = qty - 1 WHERE sku = $1 AND qty >= 1`, p.SKU)
	if err != nil {
		return false, 0, fmt.Errorf("postgres update: %w", err)
	}
	return tag.RowsAffected() == 1, 0, nil
}

// SetPostgresStock makes qty units of sku available in the stock table.
func SetPostgresStock(ctx context.Context, pool *pgxpool.Pool, sku string, qty int64) error {
	_, err := pool.Exec(ctx, `INSERT INTO stock (sku, qty) VALUES ($1, $2)
		ON CONFLICT (sku) DO UPDATE SET qty = EXCLUDED.qty`, sku, qty)
	return err
}
