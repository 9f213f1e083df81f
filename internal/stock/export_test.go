package stock

import (
	"context"
	"time"
)

// Test-only access to the batch path. The batchers group concurrent calls
// as they happen to arrive, so a test that needs one known batch (orders
// with different outcomes side by side in one script call) runs it here,
// exactly as the batcher would hand it to runOps.

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
	ops := make([]op, len(reqs))
	for i := range reqs {
		ops[i] = op{reserve: &reqs[i]}
	}
	res := g.runOps(ctx, ops)
	out, errs := make([]Reservation, len(res)), make([]error, len(res))
	for i, r := range res {
		out[i], errs[i] = r.reserve.r, r.reserve.err
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
	ops := make([]op, len(reqs))
	for i := range reqs {
		ops[i] = op{commit: &reqs[i]}
	}
	res := g.runOps(ctx, ops)
	out, errs := make([]CommitResult, len(res)), make([]error, len(res))
	for i, r := range res {
		out[i], errs[i] = r.commit.r, r.commit.err
	}
	return out, errs
}

// Batches counts the batches the gate's batcher has run, reserves and
// commits together.
func (g *Gate) Batches() int64 { return g.ops.Batches() }
