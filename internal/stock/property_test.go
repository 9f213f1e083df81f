package stock_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	tokens  []string                // every token a Reserve returned, and "" and one never issued
	skus    []string
	orders  []string
	missing string // a SKU that is never stocked
}

type holdID struct{ order, sku string }

type modelHold struct {
	qty       int64
	committed bool
	tok       string
}

// reserve is what Reserve must answer. A new reserve (Reserved) takes
// effect through take, once the Gate has said which token it made.
func (m *gateModel) reserve(order string, lines []stock.Line) (stock.Reservation, error) {
	var held, committed int
	var tok *string
	for _, l := range lines {
		h, ok := m.holds[holdID{order, l.SKU}]
		if !ok {
			continue
		}
		// One hold that stands is one token: lines under two are no repeat.
		if h.qty != l.Qty || (tok != nil && *tok != h.tok) {
			return stock.Reservation{}, stock.ErrConflict
		}
		tok = &h.tok
		if h.committed {
			committed++
		} else {
			held++
		}
	}
	switch {
	case held+committed == len(lines) && committed > 0:
		return stock.Reservation{Outcome: stock.AlreadyCommitted, Token: *tok}, nil
	case held+committed == len(lines):
		return stock.Reservation{Outcome: stock.AlreadyHeld, Token: *tok}, nil
	case held+committed > 0:
		return stock.Reservation{}, stock.ErrConflict
	}
	for _, l := range lines {
		lv := m.levels[l.SKU]
		if !lv.Stocked {
			return stock.Reservation{}, &stock.NotStockedError{SKU: l.SKU}
		}
		if lv.Available < l.Qty {
			return stock.Reservation{}, &stock.OutOfStockError{SKU: l.SKU, Available: lv.Available}
		}
	}
	return stock.Reservation{Outcome: stock.Reserved}, nil
}

// take applies a new reserve of lines under token.
func (m *gateModel) take(order string, lines []stock.Line, token string) {
	for _, l := range lines {
		lv := m.levels[l.SKU]
		lv.Available -= l.Qty
		lv.Held += l.Qty
		m.levels[l.SKU] = lv
		m.holds[holdID{order, l.SKU}] = modelHold{qty: l.Qty, tok: token}
	}
	m.tokens = append(m.tokens, token)
}

// giveBack releases order's held hold on sku and returns its units.
func (m *gateModel) giveBack(order, sku string) int64 {
	h := m.holds[holdID{order, sku}]
	lv := m.levels[sku]
	lv.Available += h.qty
	lv.Held -= h.qty
	m.levels[sku] = lv
	delete(m.holds, holdID{order, sku})
	return h.qty
}

func (m *gateModel) release(order string, skus []string) int64 {
	var units int64
	for _, sku := range dedup(skus) {
		if h, ok := m.holds[holdID{order, sku}]; ok && !h.committed {
			units += m.giveBack(order, sku)
		}
	}
	return units
}

func (m *gateModel) commit(order, token string, skus []string) stock.CommitResult {
	var res stock.CommitResult
	for _, sku := range dedup(skus) {
		h, ok := m.holds[holdID{order, sku}]
		switch {
		case !ok:
			res.Missing++
		case h.committed:
		case h.tok != token:
			// A hold the row did not rely on is never sold.
			res.Released += m.giveBack(order, sku)
		default:
			lv := m.levels[sku]
			lv.Held -= h.qty
			lv.Sold += h.qty
			m.levels[sku] = lv
			h.committed = true
			m.holds[holdID{order, sku}] = h
			res.Units += h.qty
		}
	}
	return res
}

func dedup(skus []string) []string { return slices.Compact(slices.Sorted(slices.Values(skus))) }

// TestGateProperties runs random sequences of reserve, retried reserve,
// release, commit, set and add over several orders and SKUs (one of them
// never stocked), with multi-line orders and repeated SKUs in release and
// commit. Commits name the order's own token, a token of another order or
// attempt, one never issued, or none; a step may also strip a hold's token
// (a hold written before holds had them). After every step it checks I1
// for every SKU (available >= 0 and available + held + sold = stocked
// total), every counter, and every hold and its token against the model.
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
			tokens:  []string{"", "never-issued"},
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
			want, wantErr := m.reserve(o, lines)
			got, err := g.Reserve(ctx, o, lines, deadline)
			if wantErr == nil {
				if err != nil || got.Outcome != want.Outcome || got.Partial {
					rt.Fatalf("Reserve(%s, %v) = %+v, %v, want %v, nil", o, lines, got, err, want.Outcome)
				}
				if want.Outcome != stock.Reserved {
					if got.Token != want.Token {
						rt.Fatalf("Reserve(%s, %v).Token = %q, want the standing hold's %q", o, lines, got.Token, want.Token)
					}
					return
				}
				// A new hold's token is new.
				if got.Token == "" || slices.Contains(m.tokens, got.Token) {
					rt.Fatalf("Reserve(%s, %v).Token = %q, want one never issued before", o, lines, got.Token)
				}
				m.take(o, lines, got.Token)
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
				// The order's own token most of the time (the row relied on
				// its hold), else any other.
				tokens := m.tokens
				for _, s := range m.skus {
					if h, ok := m.holds[holdID{o, s}]; ok {
						tokens = append(slices.Repeat([]string{h.tok}, 3*len(m.tokens)), m.tokens...)
						break
					}
				}
				tok := rapid.SampledFrom(tokens).Draw(rt, "token")
				want := m.commit(o, tok, skus)
				got, err := g.Commit(ctx, o, tok, skus)
				if err != nil {
					rt.Fatalf("Commit(%s, %q, %v) = %v, want nil", o, tok, skus, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					rt.Fatalf("Commit(%s, %q, %v) mismatch (-want +got):\n%s", o, tok, skus, diff)
				}
			},
			"strip token": func(rt *rapid.T) {
				ids := slices.SortedFunc(maps.Keys(m.holds), func(a, b holdID) int {
					return strings.Compare(a.order+"/"+a.sku, b.order+"/"+b.sku)
				})
				if len(ids) == 0 {
					rt.Skip("no hold")
				}
				id := rapid.SampledFrom(ids).Draw(rt, "hold")
				if err := rdb.HDel(ctx, stock.HoldKey(id.sku, id.order), "tok").Err(); err != nil {
					rt.Fatalf("HDEL tok: %v", err)
				}
				h := m.holds[id]
				h.tok = ""
				m.holds[id] = h
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
		h := c.hold.Val()
		gotHold := holdState{Qty: h["qty"], Deadline: h["deadline"], State: h["state"], Tok: h["tok"], InDeadlines: c.score.Err() == nil}
		var wantHold holdState
		if h, ok := m.holds[id]; ok {
			wantHold = holdState{Qty: strconv.FormatInt(h.qty, 10), Deadline: dl, State: "held", Tok: h.tok, InDeadlines: true}
			if h.committed {
				wantHold.State, wantHold.InDeadlines = "committed", false
			}
		}
		if diff := cmp.Diff(wantHold, gotHold); diff != "" {
			rt.Fatalf("hold %s/%s mismatch (-want +got):\n%s", id.sku, id.order, diff)
		}
	}
}
