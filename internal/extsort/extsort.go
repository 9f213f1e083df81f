// Package extsort sorts more strings than should be held in memory at
// once: they are taken in runs, each sorted in memory and, once there is
// more than one, spilled to a temporary file, and the runs are merged on
// the way out. stockctl show and reconcile list a catalogue of millions of
// SKUs in order with it, in bounded memory (docs/benchmarks.md, "Big
// catalogues").
//
// It owns its temporary files and nothing else.
package extsort

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
)

// DefaultRun is the default number of strings sorted in memory at a time:
// for SKUs, a few megabytes.
const DefaultRun = 100_000

// Sorter collects strings and gives them back sorted, each once. The zero
// value is not usable; call New. It is not safe for concurrent use.
type Sorter struct {
	run   int
	buf   []string
	files []*os.File
}

// New returns a Sorter that holds at most run strings in memory (DefaultRun
// when run <= 0).
func New(run int) *Sorter {
	if run <= 0 {
		run = DefaultRun
	}
	return &Sorter{run: run}
}

// Add adds s.
func (s *Sorter) Add(v string) error {
	s.buf = append(s.buf, v)
	if len(s.buf) >= s.run {
		return s.spill()
	}
	return nil
}

// spill writes the sorted buffer to a temporary file, each string as its
// length (uvarint) and its bytes.
func (s *Sorter) spill() error {
	if len(s.buf) == 0 {
		return nil
	}
	slices.Sort(s.buf)
	f, err := os.CreateTemp("", "stockgate-sort-")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	// Unlinked at once: the file goes when it is closed, however the
	// process ends.
	_ = os.Remove(f.Name())
	s.files = append(s.files, f)
	w := bufio.NewWriterSize(f, 64<<10)
	var n [binary.MaxVarintLen64]byte
	for i, v := range s.buf {
		if i > 0 && v == s.buf[i-1] {
			continue
		}
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
		w.WriteString(v)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	clear(s.buf)
	s.buf = s.buf[:0]
	return nil
}

// Sorted yields every string added, in byte order, each once; then the
// error that cut it short, if any, as its last pair. Call it once, after
// the last Add.
func (s *Sorter) Sorted() iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if len(s.files) == 0 {
			slices.Sort(s.buf)
			for i, v := range s.buf {
				if i > 0 && v == s.buf[i-1] {
					continue
				}
				if !yield(v, nil) {
					return
				}
			}
			return
		}
		if err := s.spill(); err != nil {
			yield("", err)
			return
		}
		h := &runs{}
		for _, f := range s.files {
			r := &run{r: bufio.NewReaderSize(f, 64<<10)}
			if err := r.next(); err != nil {
				yield("", err)
				return
			}
			if !r.done {
				h.items = append(h.items, r)
			}
		}
		heap.Init(h)
		last, first := "", true
		for h.Len() > 0 {
			r := h.items[0]
			if first || r.cur != last {
				if !yield(r.cur, nil) {
					return
				}
				last, first = r.cur, false
			}
			if err := r.next(); err != nil {
				yield("", err)
				return
			}
			if r.done {
				heap.Pop(h)
			} else {
				heap.Fix(h, 0)
			}
		}
	}
}

// Close removes the temporary files.
func (s *Sorter) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files, s.buf = nil, nil
	return errors.Join(errs...)
}

// run is one spilled run being merged.
type run struct {
	r    *bufio.Reader
	cur  string
	done bool
}

func (r *run) next() error {
	n, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		r.done = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("sort: read run: %w", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return fmt.Errorf("sort: read run: %w", err)
	}
	r.cur = string(b)
	return nil
}

// runs is a min-heap of runs by their current string.
type runs struct{ items []*run }

func (h runs) Len() int           { return len(h.items) }
func (h runs) Less(i, j int) bool { return h.items[i].cur < h.items[j].cur }
func (h runs) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *runs) Push(x any)        { h.items = append(h.items, x.(*run)) }
func (h *runs) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
