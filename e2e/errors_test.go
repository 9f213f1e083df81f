package e2e

import (
	"strings"
	"testing"
)

// TestCommandErrors: -h helps and exits 0; misuse and unreachable services
// give one clear line on stderr and a non-zero exit, never a secret.
func TestCommandErrors(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	const secret = "hunter2-secret"
	cases := []struct {
		name     string
		env      []string
		cmd      string
		args     []string
		code     int
		contains string
	}{
		{"stockctl help", nil, "stockctl", []string{"-h"}, 0, "Usage"},
		{"enqueue help", nil, "enqueue", []string{"-h"}, 0, "Usage"},
		{"worker help", nil, "worker", []string{"-h"}, 0, "Usage"},
		{"flash-sale help", nil, "enqueue", []string{"flash-sale", "-h"}, 0, "--buyers"},
		{"unknown command", nil, "stockctl", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"set missing qty", nil, "stockctl", []string{"set", "SKU-1"}, 2, "want set SKU QTY"},
		{"set negative", nil, "stockctl", []string{"set", "SKU-1", "-5"}, 2, "must be an integer >= 0"},
		{"add zero", nil, "stockctl", []string{"add", "SKU-1", "0"}, 2, "must be an integer >= 1"},
		{"bad sku", nil, "stockctl", []string{"set", "{SKU}", "1"}, 2, "sku"},
		{"order without customer", nil, "enqueue", []string{"order", "SKU-1=1"}, 2, "--customer is required"},
		{"order bad line", nil, "enqueue", []string{"order", "--customer", "c", "SKU-1"}, 2, "is not SKU=QTY"},
		{"order qty too big", nil, "enqueue", []string{"order", "--customer", "c", "SKU-1=10001"}, 2, "qty"},
		{"flash-sale no sku", nil, "enqueue", []string{"flash-sale", "--buyers", "3"}, 2, "--sku is required"},
		{"worker bad concurrency", nil, "worker", []string{"--concurrency", "0"}, 2, "--concurrency"},
		{"worker public without auth", nil, "worker", []string{"--admin-addr", "0.0.0.0:0"}, 2, "auth"},
		{"redis unreachable, password redacted", []string{"REDIS_URL=redis://:" + secret + "@127.0.0.1:1/0"},
			"stockctl", []string{"show"}, 1, "does not answer"},
		{"help hides the password in defaults", []string{"REDIS_URL=redis://u:" + secret + "@127.0.0.1:1/0", "DATABASE_URL=postgres://u:" + secret + "@h/db"},
			"worker", []string{"-h"}, 0, "xxxxx"},
		{"stockctl help hides the password", []string{"REDIS_URL=redis://u:" + secret + "@127.0.0.1:1/0"},
			"stockctl", []string{"-h"}, 0, "xxxxx"},
		{"unknown flag is one line", nil, "worker", []string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"flags after arguments", nil, "stockctl", []string{"show", "NOPE-1", "--json"}, 0, `"stocked": false`},
		{"enqueue unreachable redis, password redacted", []string{"REDIS_URL=redis://:" + secret + "@127.0.0.1:1/0"},
			"enqueue", []string{"order", "--customer", "c", "SKU-1=1"}, 1, "does not answer"},
		{"postgres unreachable, password redacted", []string{"DATABASE_URL=postgres://u:" + secret + "@127.0.0.1:1/db"},
			"stockctl", []string{"migrate"}, 1, "does not answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.run(t, c.env, c.cmd, c.args...)
			out := r.stderr
			if c.code == 0 {
				out = r.stdout + r.stderr
			}
			if r.code != c.code || !strings.Contains(out, c.contains) {
				t.Errorf("%s %v: exit %d, output %q; want exit %d containing %q", c.cmd, c.args, r.code, out, c.code, c.contains)
			}
			if c.code != 0 && strings.Count(strings.TrimRight(r.stderr, "\n"), "\n") != 0 && !strings.Contains(r.stderr, "Usage") {
				t.Errorf("%s %v: stderr has several lines, want one: %q", c.cmd, c.args, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("%s %v printed the password: %q", c.cmd, c.args, r.stdout+r.stderr)
			}
		})
	}
}
