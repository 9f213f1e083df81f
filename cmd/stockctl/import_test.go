package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

type importBundle struct {
	flags []string // --redis-url, --database-url
	rdb   *redis.Client
	pool  *pgxpool.Pool
	gate  *stock.Gate
	dir   string
}

func setupImport(t *testing.T) *importBundle {
	t.Helper()
	r, db, rdb := testsvc.RedisDB(t)
	dbURL := testsvc.NewDatabase(t)
	b := &importBundle{flags: []string{"--redis-url", r.URL(db), "--database-url", dbURL}, rdb: rdb, gate: stock.New(rdb, stock.Config{}), dir: t.TempDir()}
	if code, out, errOut := b.run(t, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	b.pool = pool
	return b
}

func (b *importBundle) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append(append([]string{}, b.flags...), args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (b *importBundle) file(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(b.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *importBundle) movements(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM stock_movements`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportCSV: every good line is set through the ledger (one stock
// movement each, reconcile clean), a SKU twice ends as its last line says,
// a SKU with an open hold keeps it, and every bad line is refused by its
// number with nothing written for it, the exit status 1.
func TestImportCSV(t *testing.T) {
	t.Parallel()
	b := setupImport(t)
	ctx := context.Background()
	// A catalogued SKU whose counters Redis lost, and one with an open hold.
	if code, _, errOut := b.run(t, "set", "LOST", "5"); code != 0 {
		t.Fatal(errOut)
	}
	if err := b.rdb.Del(ctx, stock.AvailKey("LOST"), stock.HeldKey("LOST"), stock.SoldKey("LOST")).Err(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := b.run(t, "set", "HELD", "10"); code != 0 {
		t.Fatal(errOut)
	}
	if _, err := b.gate.Reserve(ctx, "o-1", []stock.Line{{SKU: "HELD", Qty: 3}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := b.movements(t)

	body := "SKU,Qty\r\n" + // a header, and CRLF line ends
		"A-1,5\r\n" +
		"\n" +
		" A-2 , 7\n" +
		"A-1,9\n" + // A-1 again: the last line wins
		"HELD,20\n" +
		"bad{sku},1\n" + // line 7
		"A-3,-1\n" + // 8
		"A-4,1.5\n" + // 9
		"A-5,1,2\n" + // 10
		"LOST,4\n" + // 11
		strings.Repeat("x", 5000) + "\n" + // 12
		"A-6,1000000000001\n" + // 13
		"A-7,0" // no final newline
	code, out, errOut := b.run(t, "import", b.file(t, "stock.csv", body))
	if code != 1 {
		t.Fatalf("import exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "import: 12 lines, 5 set, 7 refused, ") {
		t.Errorf("stdout = %q, want the summary: 12 lines, 5 set, 7 refused", out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	for i, want := range []string{
		"line 7: invalid argument: sku must be characters", "line 8: qty \"-1\" must be an integer from 0",
		"line 9: qty \"1.5\"", "line 10: want sku,qty, got 3 fields", "line 11: LOST is in the Postgres catalogue but has no counters",
		"line 12: longer than 4096 bytes", "line 13: qty \"1000000000001\"",
	} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], "stockctl import: "+want) {
			t.Errorf("stderr line %d = %q, want it to start %q", i+1, strings.Join(lines[i:min(i+1, len(lines))], ""), "stockctl import: "+want)
		}
	}
	if last := lines[len(lines)-1]; last != "stockctl import: 7 of 12 lines refused (nothing written for them; see above)" {
		t.Errorf("last stderr line = %q", last)
	}
	for _, want := range []stock.Levels{
		{SKU: "A-1", Available: 9, Stocked: true}, {SKU: "A-2", Available: 7, Stocked: true},
		{SKU: "HELD", Available: 20, Held: 3, Stocked: true}, {SKU: "A-7", Stocked: true},
		{SKU: "A-3"}, {SKU: "A-6"}, {SKU: "LOST"},
	} {
		if got, err := b.gate.Show(ctx, want.SKU); err != nil || got[0] != want {
			t.Errorf("Show(%s) = %+v, %v; want %+v", want.SKU, got, err, want)
		}
	}
	if n := b.movements(t) - before; n != 5 {
		t.Errorf("stock movements written = %d, want 5, one per line done", n)
	}
	if _, err := b.gate.Release(ctx, "o-1", []string{"HELD"}); err != nil {
		t.Fatal(err)
	}
	// Everything but LOST (Redis lost it; rebuild's business) agrees.
	code, out, _ = b.run(t, "reconcile")
	if code != 1 || strings.Count(out, "DRIFT") != 1 || !strings.Contains(out, "LOST") {
		t.Errorf("reconcile after import: exit %d\n%s; want LOST alone drifting", code, out)
	}
}

// TestImportNDJSONAdd: ndjson lines from stdin, with add's rules: a
// quantity of 0 and unknown fields are refused; a clean file exits 0.
func TestImportNDJSONAdd(t *testing.T) {
	b := setupImport(t) // not parallel: it points stdin at a file
	ctx := context.Background()
	if code, _, errOut := b.run(t, "set", "N-1", "10"); code != 0 {
		t.Fatal(errOut)
	}
	var body strings.Builder
	body.WriteString(`{"sku":"N-1","qty":5}` + "\n")
	body.WriteString(`{"sku":"N-2","qty":0}` + "\n")
	body.WriteString(`{"sku":"N-3","qty":2,"price":1}` + "\n")
	body.WriteString(`{"sku":"N-4"}` + "\n")
	body.WriteString(`{"sku":"N-5","qty":1} {}` + "\n")
	body.WriteString(`sku,qty` + "\n")
	for i := range 2500 { // more than a batch, and N-1 again at the end
		fmt.Fprintf(&body, `{"sku":"M-%d","qty":%d}`+"\n", i, i+1)
	}
	body.WriteString(`{"sku":"N-1","qty":1}` + "\n")
	f, err := os.Open(b.file(t, "stock.ndjson", body.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := stdin
	stdin = f
	defer func() { stdin = old }()

	code, out, errOut := b.run(t, "import", "--format", "ndjson", "--add", "-")
	if code != 1 || !strings.HasPrefix(out, "import: 2507 lines, 2502 restocked, 5 refused") {
		t.Fatalf("import: exit %d, stdout %q, stderr %q; want exit 1 and 2502 of 2507 restocked", code, out, errOut)
	}
	for _, want := range []string{"line 2: qty \"0\" must be an integer from 1", "line 3: want {", "unknown field", "line 4: want", "line 5: want one JSON object", "line 6: want {"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if got, _ := b.gate.Show(ctx, "M-2499", "N-1"); got[0].Available != 2500 || got[1].Available != 16 {
		t.Errorf("after import M-2499, N-1 = %+v; want 2500 and 16 available", got)
	}
	if n, err := b.gate.CountSKUs(ctx); err != nil || n != 2501 {
		t.Errorf("CountSKUs = %d, %v; want 2501", n, err)
	}

	ok := b.file(t, "ok.ndjson", `{"sku":"N-1","qty":1}`+"\n")
	if code, out, errOut := b.run(t, "import", "--add", "--format=ndjson", ok); code != 0 || errOut != "" || !strings.HasPrefix(out, "import: 1 lines, 1 restocked, 0 refused") {
		t.Errorf("clean import: exit %d, stdout %q, stderr %q; want exit 0", code, out, errOut)
	}
	if code, _, _ := b.run(t, "reconcile"); code != 0 {
		t.Errorf("reconcile after the imports: exit %d, want 0", code)
	}
}

// TestImportUsage: a bad format, no file or two files are usage errors; a
// missing file is one line.
func TestImportUsage(t *testing.T) {
	t.Parallel()
	b := setupImport(t)
	for _, args := range [][]string{{"import"}, {"import", "a", "b"}, {"import", "--format", "tsv", "a"}} {
		if code, out, errOut := b.run(t, args...); code != 2 || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want a one-line usage error", args, code, out, errOut)
		}
	}
	if code, _, errOut := b.run(t, "import", filepath.Join(b.dir, "nope.csv")); code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("import of a missing file: exit %d, stderr %q; want exit 1, one line", code, errOut)
	}
}
