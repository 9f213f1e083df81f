package stock_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/stockgate/stockgate/internal/stock"
)

// gateModel is what the gate should hold, computed in plain Go from the
// rules in DESIGN.md, so that every step of a random run can be checked
// against it.
type gateModel struct {
	total   map[string]int64 // stocked units, changed only by Set and Add
	levels  map[string]stock.Levels
	holds   map[holdID]modelHold
	last    map[string][]stock.Line // each order's last reserve, for retries
	skus    []string
	orders  []string
	missing string // a SKU that is never stocked
}

type holdID struct{ order, sku string }

type modelHold struct {
	qty       int64
	committed bool
}

func (m *gateModel) reserve(order string, lines []stock.Line) (stock.Outcome, error) {
	var held, committed int
	for _, l := range lines {
		h, ok := m.holds[holdID{order, l.SKU}]
		if !ok {
			continue
		}
		if h.qty != l.Qty {
			return 0, stock.ErrConflict
		}
		if h.committed {
			committed++
		} else {
			held++
		}
	}
	switch {
	case held+committed == len(lines) && committed > 0:
		return stock.AlreadyCommitted, nil
	case held+committed == len(lines):
		return stock.AlreadyHeld, nil
	case held+committed > 0:
		return 0, stock.ErrConflict
	}
	for _, l := range lines {
		lv := m.levels[l.SKU]
		if !lv.Stocked {
			return 0, &stock.NotStockedError{SKU: l.SKU}
		}
		if lv.Available < l.Qty {
			return 0, &stock.OutOfStockError{SKU: l.SKU, Available: lv.Available}
		}
	}
	for _, l := range lines {
		lv := m.levels[l.SKU]
		lv.Available -= l.Qty
		lv.Held += l.Qty
		m.levels[l.SKU] = lv
		m.holds[holdID{order, l.SKU}] = modelHold{qty: l.Qty}
	}
	return stock.Reserved, nil
}

func (m *gateModel) release(order string, skus []string) int64 {
	var units int64
	for _, sku := range dedup(skus) {
		h, ok := m.holds[holdID{order, sku}]
		if !ok || h.committed {
			continue
		}
		lv := m.levels[sku]
		lv.Available += h.qty
		lv.Held -= h.qty
		m.levels[sku] = lv
		delete(m.holds, holdID{order, sku})
		units += h.qty
	}
	return units
}

func (m *gateModel) commit(order string, skus []string) stock.CommitResult {
	var res stock.CommitResult
	for _, sku := range dedup(skus) {
		h, ok := m.holds[holdID{order, sku}]
		switch {
		case !ok:
			res.Missing++
		case !h.committed:
			lv := m.levels[sku]
			lv.Held -= h.qty
			lv.Sold += h.qty
			m.levels[sku] = lv
			m.holds[holdID{order, sku}] = modelHold{qty: h.qty, committed: true}
			res.Units += h.qty
		}
	}
	return res
}

func dedup(skus []string) []string { return slices.Compact(slices.Sorted(slices.Values(skus))) }

// TestGateProperties runs random sequences of reserve, retried reserve,
// release, commit, set and add over several orders and SKUs (one of them
// never stocked), with multi-line orders and repeated SKUs in release and
// commit. After every step it checks I1 for every SKU (available >= 0 and
// available + held + sold = stocked total), every counter, and every hold
// against the model.
func TestGateProperties(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	deadline := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())

	rapid.Check(t, func(rt *rapid.T) {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			rt.Fatalf("FLUSHDB: %v", err)
		}
		m := &gateModel{
			total:   map[string]int64{},
			levels:  map[string]stock.Levels{},
			holds:   map[holdID]modelHold{},
			last:    map[string][]stock.Line{},
			skus:    []string{"s1", "s2", "s3"},
			orders:  []string{"o1", "o2", "o3", "o4"},
			missing: "ghost",
		}
		m.levels["ghost"] = stock.Levels{SKU: "ghost"}
		for _, sku := range m.skus {
			n := rapid.Int64Range(0, 6).Draw(rt, "stock "+sku)
			if _, err := g.Set(ctx, sku, n); err != nil {
				rt.Fatalf("Set(%s, %d) = %v, want nil", sku, n, err)
			}
			m.total[sku] = n
			m.levels[sku] = stock.Levels{SKU: sku, Available: n, Stocked: true}
		}
		allSKUs := append(slices.Clone(m.skus), m.missing)
		order := rapid.SampledFrom(m.orders)
		sku := rapid.SampledFrom(allSKUs)

		doReserve := func(rt *rapid.T, o string, lines []stock.Line) {
			wantOutcome, wantErr := m.reserve(o, lines)
			got, err := g.Reserve(ctx, o, lines, deadline)
			if wantErr == nil {
				if err != nil || got != wantOutcome {
					rt.Fatalf("Reserve(%s, %v) = %v, %v, want %v, nil", o, lines, got, err, wantOutcome)
				}
				return
			}
			if errors.Is(wantErr, stock.ErrConflict) {
				if !errors.Is(err, stock.ErrConflict) {
					rt.Fatalf("Reserve(%s, %v) = %v, want ErrConflict", o, lines, err)
				}
				return
			}
			if diff := cmp.Diff(wantErr, err); diff != "" {
				rt.Fatalf("Reserve(%s, %v) error mismatch (-want +got):\n%s", o, lines, diff)
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"reserve": func(rt *rapid.T) {
				o := order.Draw(rt, "order")
				skus := rapid.SliceOfNDistinct(sku, 1, 3, rapid.ID[string]).Draw(rt, "skus")
				lines := make([]stock.Line, len(skus))
				for i, s := range skus {
					lines[i] = stock.Line{SKU: s, Qty: rapid.Int64Range(1, 3).Draw(rt, "qty")}
				}
				m.last[o] = lines
				doReserve(rt, o, lines)
			},
			"retry": func(rt *rapid.T) {
				o := order.Draw(rt, "order")
				lines, ok := m.last[o]
				if !ok {
					rt.Skip("no reserve to retry")
				}
				doReserve(rt, o, lines)
			},
			"release": func(rt *rapid.T) {
				o := order.Draw(rt, "order")
				skus := rapid.SliceOfN(sku, 1, 5).Draw(rt, "skus")
				want := m.release(o, skus)
				if got, err := g.Release(ctx, o, skus); err != nil || got != want {
					rt.Fatalf("Release(%s, %v) = %d, %v, want %d, nil", o, skus, got, err, want)
				}
			},
			"commit": func(rt *rapid.T) {
				o := order.Draw(rt, "order")
				skus := rapid.SliceOfN(sku, 1, 5).Draw(rt, "skus")
				want := m.commit(o, skus)
				got, err := g.Commit(ctx, o, skus)
				if err != nil {
					rt.Fatalf("Commit(%s, %v) = %v, want nil", o, skus, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					rt.Fatalf("Commit(%s, %v) mismatch (-want +got):\n%s", o, skus, diff)
				}
			},
			"add": func(rt *rapid.T) {
				s := rapid.SampledFrom(m.skus).Draw(rt, "sku")
				n := rapid.Int64Range(1, 4).Draw(rt, "n")
				if _, err := g.Add(ctx, s, n); err != nil {
					rt.Fatalf("Add(%s, %d) = %v, want nil", s, n, err)
				}
				lv := m.levels[s]
				lv.Available += n
				m.levels[s] = lv
				m.total[s] += n
			},
			"set": func(rt *rapid.T) {
				s := rapid.SampledFrom(m.skus).Draw(rt, "sku")
				n := rapid.Int64Range(0, 6).Draw(rt, "n")
				if _, err := g.Set(ctx, s, n); err != nil {
					rt.Fatalf("Set(%s, %d) = %v, want nil", s, n, err)
				}
				lv := m.levels[s]
				m.total[s] += n - lv.Available
				lv.Available = n
				m.levels[s] = lv
			},
			"": func(rt *rapid.T) { checkModel(rt, ctx, g, rdb, m, deadline) },
		})
	})
}

// checkModel compares Redis with the model: I1 for every SKU first, then
// every counter, then every (order, SKU) hold and deadline entry.
func checkModel(rt *rapid.T, ctx context.Context, g *stock.Gate, rdb *redis.Client, m *gateModel, deadline time.Time) {
	skus := slices.Sorted(maps.Keys(m.levels))
	got, err := g.Show(ctx, skus...)
	if err != nil {
		rt.Fatalf("Show() = %v, want nil", err)
	}
	for _, l := range got {
		if l.Available < 0 || l.Total() != m.total[l.SKU] {
			rt.Fatalf("I1 broken for %s: %+v, want available >= 0 and total %d", l.SKU, l, m.total[l.SKU])
		}
	}
	want := make([]stock.Levels, len(skus))
	for i, s := range skus {
		want[i] = m.levels[s]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		rt.Fatalf("Show() mismatch (-want +got):\n%s", diff)
	}

	type cmds struct {
		hold  *redis.MapStringStringCmd
		score *redis.FloatCmd
	}
	got2 := map[holdID]cmds{}
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, o := range m.orders {
			for _, s := range skus {
				got2[holdID{o, s}] = cmds{p.HGetAll(ctx, stock.HoldKey(s, o)), p.ZScore(ctx, stock.DeadlinesKey(s), o)}
			}
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		rt.Fatalf("read holds: %v", err)
	}
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)
	for id, c := range got2 {
		gotHold := holdState{Qty: c.hold.Val()["qty"], Deadline: c.hold.Val()["deadline"], State: c.hold.Val()["state"], InDeadlines: c.score.Err() == nil}
		var wantHold holdState
		if h, ok := m.holds[id]; ok {
			wantHold = holdState{Qty: strconv.FormatInt(h.qty, 10), Deadline: dl, State: "held", InDeadlines: true}
			if h.committed {
				wantHold.State, wantHold.InDeadlines = "committed", false
			}
		}
		if diff := cmp.Diff(wantHold, gotHold); diff != "" {
			rt.Fatalf("hold %s/%s mismatch (-want +got):\n%s", id.sku, id.order, diff)
		}
	}
}
