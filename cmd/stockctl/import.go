package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/stock"
)

// How an import moves: lines go to importLanes lanes by SKU, so that the
// lines of one SKU are applied in file order while the lanes' batches reach
// Redis and Postgres side by side; each lane sends importBatch lines at a
// time through the ledger (catalog.Ledger.SetAll), a few round trips a
// batch (docs/benchmarks.md, "Big catalogues").
const (
	importLanes = 4
	importBatch = 1000
	// maxImportLine bounds a line: a SKU is 64 characters and a quantity 13
	// digits, so anything longer is not a line of an import.
	maxImportLine = 4096
	// refusalsShown bounds the refused lines printed one by one; the rest
	// are counted.
	refusalsShown = 1000
)

type importArgs struct {
	Format string // csv or ndjson
	Add    bool
	Path   string // "-" for stdin
}

func parseImport(args []string, stderr io.Writer) (importArgs, error) {
	var a importArgs
	pos, err := config.Subcommand("stockctl", "import", "import [--format csv|ndjson] [--add] FILE|-", stderr, args, func(fs *flag.FlagSet) {
		fs.StringVar(&a.Format, "format", "csv", `csv: "sku,qty" per line; ndjson: {"sku": "…", "qty": N} per line`)
		fs.BoolVar(&a.Add, "add", false, "restock each SKU by its quantity (add's rules) instead of setting it (set's)")
	})
	if err != nil {
		return importArgs{}, err
	}
	if len(pos) != 1 {
		return importArgs{}, fmt.Errorf("%w: want import [--format csv|ndjson] [--add] FILE|- (- reads stdin)", config.ErrUsage)
	}
	if a.Format != "csv" && a.Format != "ndjson" {
		return importArgs{}, fmt.Errorf("%w: --format %s: want csv or ndjson", config.ErrUsage, quoteField(a.Format))
	}
	a.Path = pos[0]
	return a, nil
}

// importCmd sets (or with --add restocks) every SKU of a file through the
// same ledger as set and add, so stock_movements and reconcile stay true,
// and refuses bad lines by number with nothing written for them. Errors
// that stop it (Redis or Postgres gone) leave the lines before them done:
// with set's rules running it again mends; with --add it would add those
// lines twice, and stock_movements says which were done.
func importCmd(ctx context.Context, cfg config.Conn, args []string, stdout, stderr io.Writer) error {
	a, err := parseImport(args, stderr)
	if err != nil {
		return err
	}
	in, size, err := openInput(a.Path)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := openStock(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.close()

	start := time.Now()
	imp := newImporter(ctx, st.ledger, a.Add)
	prog := newImportProgress(stderr, size)
	prog.start(imp)
	readErr := imp.read(in, a.Format, prog)
	imp.finish()
	prog.stop()

	for _, r := range imp.shown() {
		fmt.Fprintf(stderr, "stockctl import: line %d: %s\n", r.line, r.reason)
	}
	if n := imp.refused.Load(); n > int64(len(imp.shown())) {
		fmt.Fprintf(stderr, "stockctl import: … and %d more refused lines\n", n-int64(len(imp.shown())))
	}
	verb := map[bool]string{false: "set", true: "restocked"}[a.Add]
	fmt.Fprintf(stdout, "import: %d lines, %d %s, %d refused, %.1fs\n",
		imp.lines.Load(), imp.done.Load(), verb, imp.refused.Load(), time.Since(start).Seconds())
	if err := cmpErr(imp.err(), readErr); err != nil {
		return fmt.Errorf("stopped after %d lines done: %w", imp.done.Load(), err)
	}
	if n := imp.refused.Load(); n > 0 {
		return fmt.Errorf("%d of %d lines refused (nothing written for them; see above)", n, imp.lines.Load())
	}
	return nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stdin is what "-" reads; a test may point it elsewhere.
var stdin = os.Stdin

// openInput opens path ("-": stdin) and returns its size when known.
func openInput(path string) (io.ReadCloser, int64, error) {
	f := stdin
	if path != "-" {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, 0, err
		}
	}
	var size int64
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	if path == "-" {
		return io.NopCloser(f), size, nil
	}
	return f, size, nil
}

// importLine is one line that parsed, on its way to a lane.
type importLine struct {
	line   int
	change catalog.Change
}

type refusal struct {
	line   int
	reason string
}

// importer applies parsed lines through the ledger, lane by lane.
type importer struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	ledger *catalog.Ledger
	add    bool
	lanes  []chan importLine
	wg     sync.WaitGroup

	lines, done, refused atomic.Int64
	bytesRead            atomic.Int64 // for the progress bar

	mu      sync.Mutex
	refusal []refusal // the first refusalsShown, by line once shown
}

func newImporter(ctx context.Context, l *catalog.Ledger, add bool) *importer {
	ctx, cancel := context.WithCancelCause(ctx)
	imp := &importer{ctx: ctx, cancel: cancel, ledger: l, add: add}
	for range importLanes {
		ch := make(chan importLine, importBatch)
		imp.lanes = append(imp.lanes, ch)
		imp.wg.Go(func() { imp.lane(ch) })
	}
	return imp
}

// read parses r line by line and hands each good line to its SKU's lane;
// it stops early when a lane hit an error that stops the import.
func (imp *importer) read(r io.Reader, format string, prog *importProgress) error {
	br := bufio.NewReaderSize(&countingReader{r: r, n: &imp.bytesRead}, 64<<10)
	header := format == "csv"
	for n := 1; ; n++ {
		if imp.ctx.Err() != nil {
			return nil // the lane's error says why
		}
		text, long, err := readLine(br)
		if err == io.EOF && text == "" && !long {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read line %d: %w", n, err)
		}
		if strings.TrimSpace(text) == "" && !long {
			continue
		}
		imp.lines.Add(1)
		var c catalog.Change
		var perr error
		switch {
		case long:
			perr = fmt.Errorf("longer than %d bytes", maxImportLine)
		case header && isCSVHeader(text):
			imp.lines.Add(-1) // a header is no line of stock
			header = false
			continue
		case format == "csv":
			c, perr = parseCSVLine(text, imp.add)
		default:
			c, perr = parseJSONLine(text, imp.add)
		}
		header = false
		if perr != nil {
			imp.refuse(n, perr.Error())
			continue
		}
		select {
		case imp.lanes[stock.Slot(c.SKU)%importLanes] <- importLine{line: n, change: c}:
		case <-imp.ctx.Done():
			return nil
		}
		if err == io.EOF {
			return nil
		}
	}
}

// finish waits for every lane to apply what it was given.
func (imp *importer) finish() {
	for _, ch := range imp.lanes {
		close(ch)
	}
	imp.wg.Wait()
}

// err is the error that stopped the import, if any.
func (imp *importer) err() error {
	if imp.ctx.Err() == nil {
		return nil
	}
	return context.Cause(imp.ctx)
}

func (imp *importer) refuse(line int, reason string) {
	imp.refused.Add(1)
	imp.mu.Lock()
	defer imp.mu.Unlock()
	if len(imp.refusal) < refusalsShown {
		imp.refusal = append(imp.refusal, refusal{line, reason})
	}
}

// shown is the refusals to print, by line number.
func (imp *importer) shown() []refusal {
	imp.mu.Lock()
	defer imp.mu.Unlock()
	slices.SortFunc(imp.refusal, func(a, b refusal) int { return a.line - b.line })
	return imp.refusal
}

// lane applies its lines in batches of importBatch, starting a new batch
// before a SKU already in the batch, so that every line of a SKU is
// applied in file order.
func (imp *importer) lane(ch <-chan importLine) {
	batch := make([]importLine, 0, importBatch)
	in := make(map[string]bool, importBatch)
	flush := func() {
		if len(batch) > 0 && imp.ctx.Err() == nil {
			imp.apply(batch)
		}
		batch = batch[:0]
		clear(in)
	}
	for {
		var l importLine
		var ok bool
		select {
		case l, ok = <-ch:
		default:
			// Nothing waiting: send what there is rather than wait for a
			// full batch (a slow pipe on stdin).
			flush()
			l, ok = <-ch
		}
		if !ok {
			flush()
			return
		}
		if in[l.change.SKU] || len(batch) == importBatch {
			flush()
		}
		batch = append(batch, l)
		in[l.change.SKU] = true
	}
}

func (imp *importer) apply(batch []importLine) {
	changes := make([]catalog.Change, len(batch))
	for i, l := range batch {
		changes[i] = l.change
	}
	var res []catalog.Changed
	var err error
	if imp.add {
		res, err = imp.ledger.AddAll(imp.ctx, changes)
	} else {
		res, err = imp.ledger.SetAll(imp.ctx, changes)
	}
	if err != nil && !errors.Is(err, catalog.ErrNotRecorded) {
		imp.cancel(err)
		return
	}
	for i, r := range res {
		switch {
		case r.Err == nil:
			imp.done.Add(1)
		case errors.Is(r.Err, catalog.ErrNotRecorded):
		case errors.Is(r.Err, catalog.ErrCountersLost):
			imp.refuse(batch[i].line, fmt.Sprintf("%s is in the Postgres catalogue but has no counters in Redis (Redis lost its data?): run stockctl rebuild first", batch[i].change.SKU))
		default:
			imp.refuse(batch[i].line, r.Err.Error())
		}
	}
	if err != nil {
		imp.cancel(err)
	}
}

// readLine reads one line without its "\n" (and "\r"), and reports a line
// longer than maxImportLine, whose rest it skips, as long.
func readLine(br *bufio.Reader) (text string, long bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxImportLine+2 {
			long = true
		} else {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if long {
			return "", true, err
		}
		buf = bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r"))
		return string(buf), false, err
	}
}

func isCSVHeader(text string) bool {
	f := strings.Split(text, ",")
	return len(f) == 2 && strings.EqualFold(strings.TrimSpace(f[0]), "sku") && strings.EqualFold(strings.TrimSpace(f[1]), "qty")
}

// parseCSVLine reads "sku,qty", spaces around either allowed.
func parseCSVLine(text string, add bool) (catalog.Change, error) {
	f := strings.Split(text, ",")
	if len(f) != 2 {
		return catalog.Change{}, fmt.Errorf("want sku,qty, got %d fields", len(f))
	}
	return checkChange(strings.TrimSpace(f[0]), strings.TrimSpace(f[1]), add)
}

// parseJSONLine reads {"sku": "…", "qty": N}, both required, nothing else.
func parseJSONLine(text string, add bool) (catalog.Change, error) {
	var v struct {
		SKU *string      `json:"sku"`
		Qty *json.Number `json:"qty"`
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return catalog.Change{}, fmt.Errorf("want {\"sku\": \"…\", \"qty\": N}: %s", oneLine(err.Error()))
	}
	if _, err := dec.Token(); err != io.EOF {
		return catalog.Change{}, errors.New("want one JSON object on the line, found more after it")
	}
	if v.SKU == nil || v.Qty == nil {
		return catalog.Change{}, errors.New(`want {"sku": "…", "qty": N}: both are required`)
	}
	return checkChange(*v.SKU, v.Qty.String(), add)
}

// checkChange applies set's and add's argument rules to one line.
func checkChange(sku, qty string, add bool) (catalog.Change, error) {
	if err := stock.CheckSKU(sku); err != nil {
		return catalog.Change{}, err
	}
	lo := int64(0)
	if add {
		lo = 1
	}
	n, err := strconv.ParseInt(qty, 10, 64)
	if err != nil || n < lo || n > stock.MaxStock {
		return catalog.Change{}, fmt.Errorf("qty %s must be an integer from %d to %d", quoteField(qty), lo, int64(stock.MaxStock))
	}
	return catalog.Change{SKU: sku, Qty: n}, nil
}

// quoteField quotes s on one line, cut after 40 bytes.
func quoteField(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.QuoteToASCII(s)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// importProgress draws a bar on stderr while the import runs, only when
// stderr is a terminal: by bytes when the input's size is known, else a
// count of lines.
type importProgress struct {
	w     io.Writer
	tty   bool
	size  int64
	quit  chan struct{}
	done  chan struct{}
	shown bool
}

func newImportProgress(w io.Writer, size int64) *importProgress {
	f, ok := w.(*os.File)
	return &importProgress{w: w, tty: ok && term.IsTerminal(int(f.Fd())), size: size}
}

func (p *importProgress) start(imp *importer) {
	if !p.tty {
		return
	}
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		began := time.Now()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
			lines, done, refused := imp.lines.Load(), imp.done.Load(), imp.refused.Load()
			rate := float64(done) / max(time.Since(began).Seconds(), 0.001)
			if p.size > 0 {
				const width = 30
				frac := min(float64(imp.bytesRead.Load())/float64(p.size), 1)
				filled := int(frac * width)
				fmt.Fprintf(p.w, "\rimport [%s%s] %3.0f%%  %d lines, %d done, %d refused, %.0f/s ",
					strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*frac, lines, done, refused, rate)
			} else {
				fmt.Fprintf(p.w, "\rimport: %d lines, %d done, %d refused, %.0f/s ", lines, done, refused, rate)
			}
			p.shown = true
		}
	}()
}

func (p *importProgress) stop() {
	if !p.tty {
		return
	}
	close(p.quit)
	<-p.done
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
