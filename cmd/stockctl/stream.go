package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"

	"github.com/stockgate/stockgate/internal/extsort"
	"github.com/stockgate/stockgate/internal/stock"
)

// show and reconcile print as they go, a chunk of SKUs at a time, so that a
// catalogue of millions costs bounded memory (docs/benchmarks.md, "Big
// catalogues"). On an error part-way the output stops short and the exit
// status is 1.

// showChunk is how many SKUs' counters one read takes, and how many table
// rows are aligned together.
const showChunk = 1000

// jsonArray writes a JSON array one element at a time, byte for byte what
// json.Encoder with SetIndent("", "  ") writes for the whole slice.
type jsonArray struct {
	w *bufio.Writer
	n int
}

func newJSONArray(w io.Writer) *jsonArray { return &jsonArray{w: bufio.NewWriterSize(w, 64<<10)} }

func (a *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if a.n == 0 {
		sep = "[\n  "
	}
	a.n++
	a.w.WriteString(sep)
	_, err = a.w.Write(b)
	return err
}

func (a *jsonArray) close() error {
	if a.n == 0 {
		a.w.WriteString("[]\n")
	} else {
		a.w.WriteString("\n]\n")
	}
	return a.w.Flush()
}

// eachLevels calls fn with the levels of every stocked SKU, in byte order,
// a chunk at a time: the set of SKUs is sorted through temporary files past
// one sort run, and each chunk's counters are read in one pipeline.
func eachLevels(ctx context.Context, gate *stock.Gate, fn func([]stock.Levels) error) error {
	sorter := extsort.New(0)
	defer sorter.Close()
	if err := gate.ScanSKUs(ctx, func(skus []string) error {
		for _, s := range skus {
			if err := sorter.Add(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	batch := make([]string, 0, showChunk)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		levels, err := gate.Show(ctx, batch...)
		if err != nil {
			return err
		}
		batch = batch[:0]
		return fn(levels)
	}
	for sku, err := range sorter.Sorted() {
		if err != nil {
			return err
		}
		batch = append(batch, sku)
		if len(batch) == showChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
