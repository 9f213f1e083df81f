package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/stock"
)

// fakeStock is Redis's side: the set of SKUs comes out in chunks, in no
// order and with repeats, as SSCAN gives it.
type fakeStock struct {
	levels map[string]stock.Levels
	extra  []string // members of the set with no counters
	shown  int      // SKUs Show was asked for in one call, at most
}

func (f *fakeStock) ScanSKUs(_ context.Context, fn func([]string) error) error {
	var all []string
	for s := range f.levels {
		all = append(all, s, s) // every member twice
	}
	all = append(all, f.extra...)
	for c := range slices.Chunk(all, 333) {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStock) Show(_ context.Context, skus ...string) ([]stock.Levels, error) {
	f.shown = max(f.shown, len(skus))
	out := make([]stock.Levels, len(skus))
	for i, s := range skus {
		if err := stock.CheckSKU(s); err != nil {
			return nil, err
		}
		l, ok := f.levels[s]
		if !ok {
			l = stock.Levels{SKU: s}
		}
		out[i] = l
	}
	slices.SortFunc(out, func(a, b stock.Levels) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}

// sorted is a Postgres stream: pairs in the order given, then err.
type sorted struct {
	skus []string
	n    []int64
	err  error
}

func (s sorted) each(_ context.Context, fn func(string, int64) error) error {
	for i, sku := range s.skus {
		if err := fn(sku, s.n[i]); err != nil {
			return err
		}
	}
	return s.err
}

type fakeCat struct{ sorted }

func (c fakeCat) EachProduct(ctx context.Context, fn func(string, int64) error) error {
	return c.each(ctx, fn)
}

type fakeSold struct{ sorted }

func (s fakeSold) EachConfirmed(ctx context.Context, fn func(string, int64) error) error {
	return s.each(ctx, fn)
}

// No checkouts: those are covered by the worker's and e2e's reconcile
// tests against real rows.
func (fakeSold) EachHeld(context.Context, func(string, int64) error) error     { return nil }
func (fakeSold) EachReturned(context.Context, func(string, int64) error) error { return nil }

// TestStream: every SKU known to Redis, the catalogue or the confirmed
// orders gets one row, in byte order, with its drift; Redis's counters are
// read a chunk at a time.
func TestStream(t *testing.T) {
	t.Parallel()
	st := &fakeStock{levels: map[string]stock.Levels{}, extra: []string{"bad{sku}"}}
	var cat, sold sorted
	var want []Row
	for i := range 2500 {
		sku := fmt.Sprintf("S-%05d", i)
		st.levels[sku] = stock.Levels{SKU: sku, Available: 8, Sold: 2, Stocked: true}
		cat.skus, cat.n = append(cat.skus, sku), append(cat.n, 10)
		sold.skus, sold.n = append(sold.skus, sku), append(sold.n, 2)
		want = append(want, Row{SKU: sku, Stocked: 10, Total: 10, Available: 8, Sold: 2, Confirmed: 2})
	}
	// Only in the catalogue (Redis lost it), only in Redis, only sold.
	cat.skus, cat.n = append(cat.skus, "T-lost"), append(cat.n, 5)
	st.levels["U-redis"] = stock.Levels{SKU: "U-redis", Available: 3, Stocked: true}
	sold.skus, sold.n = append(sold.skus, "V-sold"), append(sold.n, 1)
	want = append([]Row{{SKU: "bad{sku}", Drift: []string{"sku not valid for redis"}}}, want...)
	want = append(want,
		Row{SKU: "T-lost", Stocked: 5, Drift: []string{"missing in redis", "stocked -5"}},
		Row{SKU: "U-redis", Total: 3, Available: 3, Drift: []string{"stocked +3"}},
		Row{SKU: "V-sold", Confirmed: 1, Drift: []string{"missing in redis", "sold -1 vs confirmed"}},
	)
	slices.SortFunc(want, func(a, b Row) int { return strings.Compare(a.SKU, b.SKU) })

	got, err := Compare(context.Background(), st, fakeCat{cat}, fakeSold{sold})
	if err != nil {
		t.Fatalf("Compare = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compare mismatch (-want +got):\n%s", diff)
	}
	if st.shown > chunk {
		t.Errorf("Show was asked for %d SKUs at once, want at most %d", st.shown, chunk)
	}

	// A stream out of byte order, or one that fails, is an error, not
	// rows that pair the wrong SKUs.
	bad := sorted{skus: []string{"B", "A"}, n: []int64{1, 1}}
	if _, err := Compare(context.Background(), st, fakeCat{bad}, fakeSold{sold}); err == nil || !strings.Contains(err.Error(), "byte order") {
		t.Errorf("Compare with products out of order = %v, want a byte-order error", err)
	}
	boom := errors.New("connection reset")
	failing := sorted{skus: []string{"A"}, n: []int64{1}, err: boom}
	if _, err := Compare(context.Background(), st, fakeCat{cat}, fakeSold{failing}); !errors.Is(err, boom) {
		t.Errorf("Compare with a failing stream = %v, want its error", err)
	}
	stop := errors.New("enough")
	n := 0
	if err := Stream(context.Background(), st, fakeCat{cat}, fakeSold{sold}, func(Row) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Errorf("Stream with emit failing = %v, want emit's error", err)
	}
}
