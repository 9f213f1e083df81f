package stock

import (
	"context"
	"time"
)

// Test-only access to the batch path. The batchers group concurrent calls
// as they happen to arrive, so a test that needs one known batch (orders
// with different outcomes side by side in one script call) runs it here,
// exactly as a batcher would hand it to reserveMany or commitMany.

// MaxBatchLines is maxBatchLines, for tests that split a batch on it.
const MaxBatchLines = maxBatchLines

// ReserveOrder is one order of a ReserveBatch: one slot group's lines, as
// Reserve hands them to the batcher.
type ReserveOrder struct {
	OrderID, Token string
	Lines          []Line
	Deadline       time.Time
}

// ReserveBatch runs orders as one batch of the reserve batcher.
func (g *Gate) ReserveBatch(ctx context.Context, orders []ReserveOrder) ([]Reservation, []error) {
	reqs := make([]reserveReq, len(orders))
	for i, o := range orders {
		reqs[i] = reserveReq{orderID: o.OrderID, token: o.Token, lines: o.Lines, deadline: o.Deadline}
	}
	res := g.reserveMany(ctx, reqs)
	out, errs := make([]Reservation, len(res)), make([]error, len(res))
	for i, r := range res {
		out[i], errs[i] = r.r, r.err
	}
	return out, errs
}

// CommitOrder is one order of a CommitBatch: one slot group's SKUs, sorted
// and without repeats, as Commit hands them to the batcher.
type CommitOrder struct {
	OrderID, Token string
	SKUs           []string
}

// CommitBatch runs orders as one batch of the commit batcher.
func (g *Gate) CommitBatch(ctx context.Context, orders []CommitOrder) ([]CommitResult, []error) {
	reqs := make([]commitReq, len(orders))
	for i, o := range orders {
		reqs[i] = commitReq{orderID: o.OrderID, token: o.Token, skus: o.SKUs}
	}
	res := g.commitMany(ctx, reqs)
	out, errs := make([]CommitResult, len(res)), make([]error, len(res))
	for i, r := range res {
		out[i], errs[i] = r.r, r.err
	}
	return out, errs
}

// Batches counts the batches the reserve and the commit batcher have run.
func (g *Gate) Batches() (reserves, commits int64) {
	return g.reserves.Batches(), g.commits.Batches()
}
