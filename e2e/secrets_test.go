package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestSecrets runs a whole small sale with a password on Redis (requirepass)
// and on Postgres (scram-sha-256), with debug logs and spans printed to the
// console, and then greps every byte every command printed, and every admin
// page the worker served, for either password, raw or URL-encoded, or any
// long piece of one. Both passwords hold characters a URL must escape
// ('@', ':', '/', '%', '#', '?', '&', '!'), so the sale completing also shows
// such passwords work at all. Commands that fail with a wrong password
// must not print that one either.
func TestSecrets(t *testing.T) {
	t.Parallel()
	const (
		pgPassword    = "pgS3cr3t@Qx7LmB:Zv9KwD/Jd4RtF%2F!Hy6NpG"
		redisPassword = "rdS3cr3t#Gq8VbH:Xk2PwJ@Lm5ZtK?Fj7HsM&"
		// A wrong password is a secret too: the failure message is where
		// one would leak.
		wrongPG    = "wrPg9TbQ@Vn3QsR/KxW%41LdSv"
		wrongRedis = "wrRd7HcN:Yp2MzP@Gf#UdQ4Tz"
	)
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{Password: pgPassword})
	rs := testsvc.NewRedis(t, "--requirepass", redisPassword)
	redisURL := func(pw string) string {
		return (&url.URL{Scheme: "redis", User: url.UserPassword("", pw), Host: rs.Addr, Path: "/0"}).String()
	}
	pgOf := func(pw string) string { return pgURL(pg, pw, "sslmode=disable") }
	s := privateStack(t, redisURL(redisPassword), pgOf(pgPassword), "OTEL_TRACES_EXPORTER=console", "LOG_LEVEL=debug")
	s.redact = redactor(pgPassword, redisPassword, wrongPG, wrongRedis)

	var seen []captured
	run := func(env []string, name string, args ...string) result {
		t.Helper()
		r := s.run(t, env, name, args...)
		what := strings.Join(append([]string{name}, args...), " ")
		seen = append(seen, captured{what + " (stdout)", r.stdout}, captured{what + " (stderr)", r.stderr})
		return r
	}
	mustRun := func(name string, args ...string) string {
		t.Helper()
		r := run(nil, name, args...)
		if r.code != 0 {
			t.Fatalf("%s %s: exit %d, stderr %q", name, strings.Join(args, " "), r.code, mask(r.stderr, secretPattern(pgPassword, redisPassword)))
		}
		return r.stdout
	}

	mustRun("stockctl", "migrate")
	mustRun("stockctl", "set", "SEC-1", "15")
	w := s.startWorker(t, nil, "--log-level", "debug")
	out := mustRun("enqueue", "flash-sale", "--sku", "SEC-1", "--buyers", "40", "--wait", "--json")
	if !strings.Contains(out, `"enqueued":40`) || !strings.Contains(out, `"confirmed":15`) || !strings.Contains(out, `"rejected":25`) {
		t.Errorf("flash sale with escaped passwords: stdout %q; want 40 enqueued, 15 confirmed, 25 rejected", out)
	}
	var levels []struct{ Available, Held, Sold int }
	if out := mustRun("stockctl", "show", "--json", "SEC-1"); json.Unmarshal([]byte(out), &levels) != nil ||
		len(levels) != 1 || levels[0].Available != 0 || levels[0].Held != 0 || levels[0].Sold != 15 {
		t.Errorf("stockctl show --json SEC-1 = %q, want available 0, held 0, sold 15", out)
	}
	mustRun("stockctl", "reconcile")
	mustRun("enqueue", "order", "--customer", "c-late", "SEC-1=1")
	for _, cmd := range [][]string{{"worker", "-h"}, {"stockctl", "-h"}, {"enqueue", "-h"}} {
		mustRun(cmd[0], cmd[1:]...)
	}
	for _, page := range []string{"/healthz", "/readyz", "/metrics", "/monitoring/", "/monitoring/api/redis_info", "/monitoring/api/queues"} {
		body := w.scrape(t, page)
		if page == "/metrics" && !strings.Contains(body, `stockgate_orders_total{`) {
			t.Errorf("/metrics lacks stockgate_orders_total: the scrape missed the worker's own metrics")
		}
		seen = append(seen, captured{"GET " + page, body})
	}
	// A clean exit flushes the spans on the way out.
	if err := w.Stop(t, syscall.SIGTERM, time.Minute); err != nil {
		t.Errorf("worker exit after SIGTERM = %v, want 0", err)
	}
	wout, werr := w.Stdout(), w.Stderr()
	seen = append(seen, captured{"worker (stdout)", wout}, captured{"worker (stderr)", werr})
	// Otherwise the grep below would pass for want of anything to look at.
	if !strings.Contains(wout, `"level":"DEBUG"`) || !strings.Contains(wout, `"SpanContext"`) {
		t.Errorf("worker stdout has no debug log line or no console span")
	}

	for _, c := range []struct {
		env  string
		args []string
	}{
		{"REDIS_URL=" + redisURL(wrongRedis), []string{"stockctl", "show", "SEC-1"}},
		{"REDIS_URL=" + redisURL(wrongRedis), []string{"enqueue", "order", "--customer", "c-1", "SEC-1=1"}},
		{"REDIS_URL=" + redisURL(wrongRedis), []string{"worker", "--admin-addr", "127.0.0.1:0"}},
		{"DATABASE_URL=" + pgOf(wrongPG), []string{"stockctl", "migrate"}},
		{"DATABASE_URL=" + pgOf(wrongPG), []string{"worker", "--admin-addr", "127.0.0.1:0"}},
	} {
		if r := run([]string{c.env}, c.args[0], c.args[1:]...); r.code == 0 {
			t.Errorf("%s with %s: exit 0, want a failure", strings.Join(c.args, " "), strings.SplitN(c.env, "=", 2)[0])
		}
	}

	re := secretPattern(pgPassword, redisPassword, wrongPG, wrongRedis)
	for _, u := range []string{redisURL(redisPassword), pgOf(pgPassword), redisURL(wrongRedis), pgOf(wrongPG), "password=" + pgPassword} {
		if !re.MatchString(u) {
			t.Fatalf("the secret pattern misses %q: the grep would see nothing", u)
		}
	}
	var bytesSeen int
	for _, c := range seen {
		bytesSeen += len(c.text)
		for _, line := range strings.SplitAfter(c.text, "\n") {
			if re.MatchString(line) {
				t.Errorf("%s shows a password:\n%s", c.what, mask(line, re))
			}
		}
	}
	t.Logf("no password in %d bytes from %d outputs and pages", bytesSeen, len(seen))
}

type captured struct{ what, text string }

// secretPattern matches each password raw, in every URL escaping (any hex
// case), and any run of six or more letters and digits from one, which is
// what a redactor that cut the URL at the wrong '@', ':' or '/' would leave.
func secretPattern(passwords ...string) *regexp.Regexp {
	var exact, folded []string
	for _, pw := range passwords {
		if pw == "" {
			panic("secretPattern: an empty password would match everything")
		}
		exact = append(exact, regexp.QuoteMeta(pw))
		userinfo := strings.TrimSuffix(strings.TrimPrefix(url.UserPassword("", pw).String(), ":"), "@")
		for _, enc := range []string{url.QueryEscape(pw), url.PathEscape(pw), userinfo} {
			if enc != pw {
				folded = append(folded, regexp.QuoteMeta(enc))
			}
		}
		for _, frag := range regexp.MustCompile(`[A-Za-z0-9]{6,}`).FindAllString(pw, -1) {
			exact = append(exact, regexp.QuoteMeta(frag))
		}
	}
	// Longest first, so a mask covers the whole password, not a piece.
	byLen := func(s []string) { sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) }) }
	byLen(exact)
	byLen(folded)
	alts := exact
	if len(folded) > 0 {
		alts = append([]string{`(?i:` + strings.Join(folded, "|") + `)`}, exact...)
	}
	return regexp.MustCompile(strings.Join(alts, "|"))
}

// redactor masks every password in a whole output, for the worker output
// a failed test logs.
func redactor(passwords ...string) func(string) string {
	re := secretPattern(passwords...)
	return func(out string) string { return re.ReplaceAllString(out, "*****") }
}

// mask hides every match, and cuts a long line (a span) around the first.
func mask(line string, re *regexp.Regexp) string {
	if loc := re.FindStringIndex(line); loc != nil && len(line) > 400 {
		line = line[max(0, loc[0]-200):min(len(line), loc[1]+200)]
	}
	return strings.TrimRight(re.ReplaceAllString(line, "*****"), "\n")
}

// scrape is a GET's status line, headers and body, as one text.
func (w *worker) scrape(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	_ = resp.Header.Write(&b)
	b.Write(body)
	return b.String()
}
