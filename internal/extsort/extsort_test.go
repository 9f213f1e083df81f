package extsort

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSorted: whatever the run size (one run in memory, many spilled, a
// run of one), the strings come back in byte order, each once, and Close
// leaves no file behind.
func TestSorted(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var in []string
	for range 5000 {
		in = append(in, fmt.Sprintf("SKU-%d", rng.IntN(3000)))
	}
	in = append(in, "", "é", "a\nb", "Z")
	want := slices.Compact(slices.Sorted(slices.Values(in)))
	before := temps(t)
	for _, n := range []int{0, 1, 7, 1000, 10000} {
		s := New(n)
		for _, v := range in {
			if err := s.Add(v); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for v, err := range s.Sorted() {
			if err != nil {
				t.Fatalf("run %d: %v", n, err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, want) {
			t.Errorf("run %d: %d strings back, want %d in order, each once (first %q)", n, len(got), len(want), got[:min(5, len(got))])
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := temps(t); after != before {
		t.Errorf("temporary sort files: %d before, %d after", before, after)
	}
	// Stopping early is fine too.
	s := New(2)
	for _, v := range []string{"c", "b", "a", "d"} {
		_ = s.Add(v)
	}
	for v := range s.Sorted() {
		if v != "a" {
			t.Errorf("first = %q, want a", v)
		}
		break
	}
	_ = s.Close()
}

func temps(t *testing.T) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "stockgate-sort-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
