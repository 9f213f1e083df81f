package e2e

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// privateStack is a stack on the given Redis and Postgres URLs instead of
// the package's shared ones.
func privateStack(t *testing.T, redisURL, databaseURL string, extraEnv ...string) *stack {
	t.Helper()
	s := &stack{env: append(os.Environ(), "REDIS_URL="+redisURL, "DATABASE_URL="+databaseURL,
		// The test's own OTEL settings must not leak into the commands.
		"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=")}
	s.env = append(s.env, extraEnv...)
	return s
}

// pgURL is a postgres:// URL as an operator would write it for a private
// server, with the password escaped where the URL needs it.
func pgURL(pg *testsvc.Postgres, password, query string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password), Host: pg.Addr, Path: "/postgres", RawQuery: query}
	return u.String()
}

// TestPostgresTLS runs a sale against a private Postgres that admits only
// TLS connections with a password (hostssl + scram-sha-256), its
// certificate from a test CA. The commands work with sslmode=verify-full and
// the CA in sslrootcert, and really talk TLS; a wrong CA, sslmode=disable
// and a wrong password each fail at start with one clear line that never
// shows the password.
func TestPostgresTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir, "pg")
	otherCA, _, _ := testCA(t, dir, "other")
	const password = "pgTLS-Pa55word-e2e"
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{
		Password: password,
		TLS:      &testsvc.PostgresTLS{CertFile: certFile, KeyFile: keyFile},
	})
	verify := func(ca string) string {
		return pgURL(pg, password, "sslmode=verify-full&sslrootcert="+ca)
	}
	good := verify(caFile)

	r, db, rdb := testsvc.RedisDB(t)
	s := privateStack(t, r.URL(db), good)
	s.rdb = rdb
	s.redact = redactor(password)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "PGTLS-1", "20")
	w := s.startWorker(t, nil)
	out := s.mustRun(t, "enqueue", "flash-sale", "--sku", "PGTLS-1", "--buyers", "50", "--wait", "--json")
	if !strings.Contains(out, `"enqueued":50`) || !strings.Contains(out, `"confirmed":20`) || !strings.Contains(out, `"rejected":30`) ||
		!strings.Contains(out, `"failed":0`) || !strings.Contains(out, `"expired":0`) {
		t.Errorf("flash sale over verify-full TLS: stdout %q; want 50 enqueued, 20 confirmed, 30 rejected, 0 failed or expired", out)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile over TLS: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	pool, err := pgxpoolFor(t, good)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var confirmed, outOfStock, other, sold int
	if err := pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE status = 'confirmed'),
		count(*) FILTER (WHERE status = 'rejected' AND reason = 'out_of_stock'),
		count(*) FILTER (WHERE status NOT IN ('confirmed', 'rejected')),
		(SELECT coalesce(sum(qty), 0) FROM order_lines l JOIN orders o USING (order_id) WHERE o.status = 'confirmed')
		FROM orders`).Scan(&confirmed, &outOfStock, &other, &sold); err != nil {
		t.Fatal(err)
	}
	if confirmed != 20 || outOfStock != 30 || other != 0 || sold != 20 {
		t.Errorf("orders over TLS: %d confirmed, %d out_of_stock, %d other, %d units sold; want 20, 30, 0, 20", confirmed, outOfStock, other, sold)
	}
	// hostssl already refuses anything else; this shows the worker's own
	// sessions (its pool is still open) are the encrypted ones.
	var workerSessions, plain int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
		FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`).Scan(&workerSessions, &plain); err != nil {
		t.Fatal(err)
	}
	if workerSessions == 0 || plain != 0 {
		t.Errorf("client sessions besides this one: %d over TLS, %d plain; want some, all TLS", workerSessions, plain)
	}
	w.stop(t, 30*time.Second)
	// The wrong password below holds the right one; the pattern finds
	// either, raw or escaped, and masks it in what this test prints.
	secret := secretPattern(password)
	if strings.Contains(w.Output(), `"level":"ERROR"`) || secret.MatchString(w.Output()) {
		t.Errorf("worker over TLS logged errors or the password:\n%s", mask(w.Output(), secret))
	}

	for _, c := range []struct {
		name, url string
		want      []string
	}{
		{"CA that did not sign the server's certificate", verify(otherCA), []string{"certificate signed by unknown authority"}},
		{"sslmode=disable against hostssl only", pgURL(pg, password, "sslmode=disable"), []string{"no pg_hba.conf entry", "no encryption"}},
		{"wrong password", pgURL(pg, "wrong-"+password, "sslmode=verify-full&sslrootcert="+caFile), []string{"password authentication failed"}},
	} {
		for _, cmd := range [][]string{{"worker", "--admin-addr", "127.0.0.1:0"}, {"stockctl", "migrate"}} {
			r := s.run(t, []string{"DATABASE_URL=" + c.url}, cmd[0], cmd[1:]...)
			line := strings.TrimSpace(r.stderr)
			ok := r.code != 0 && !strings.Contains(line, "\n") && strings.Contains(line, "postgres at postgres://postgres:xxxxx@")
			for _, want := range c.want {
				ok = ok && strings.Contains(line, want)
			}
			if !ok {
				t.Errorf("%s: %s: exit %d, stderr %q; want a non-zero exit and one stderr line naming the redacted URL and %q",
					c.name, strings.Join(cmd, " "), r.code, mask(r.stderr, secret), c.want)
			}
			if secret.MatchString(r.stdout + r.stderr) {
				t.Errorf("%s: %s: output shows the password:\n%s%s", c.name, cmd[0], mask(r.stdout, secret), mask(r.stderr, secret))
			}
			t.Logf("%s: %s", c.name, mask(line, secret))
		}
	}
}
