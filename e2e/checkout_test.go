package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestCheckoutCommands is the README's "Checkout" through the real
// binaries: a hold, the units held, a confirm; a hold and a cancel; a
// return of a sale; the answers when it is too late or the order never
// existed; and reconcile clean with a checkout still in progress.
func TestCheckoutCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "CK-1", "10")
	w := s.startWorker(t, nil)

	out := s.mustRun(t, "enqueue", "order", "--id", "co-1", "--customer", "c-9", "--hold", "10m", "CK-1=2")
	if !strings.Contains(out, "enqueued order co-1, held for 10m0s once reserved") {
		t.Errorf("enqueue order --hold printed %q", out)
	}
	// confirm waits for the hold first, then for the confirm.
	if out := s.mustRun(t, "enqueue", "confirm", "co-1"); out != "order co-1: confirmed\n" {
		t.Errorf("enqueue confirm co-1 printed %q, want %q", out, "order co-1: confirmed\n")
	}

	s.mustRun(t, "enqueue", "order", "--id", "co-2", "--customer", "c-9", "--hold", "10m", "CK-1=3")
	if out := s.mustRun(t, "enqueue", "cancel", "co-2", "--reason", "payment failed"); out != "order co-2: cancelled checkout_cancelled (payment failed)\n" {
		t.Errorf("enqueue cancel co-2 printed %q", out)
	}
	r := s.run(t, nil, "enqueue", "confirm", "co-2")
	if r.code != 1 || r.stdout != "order co-2: cancelled checkout_cancelled (payment failed)\n" ||
		strings.TrimSpace(r.stderr) != "enqueue confirm: too late to confirm order co-2: it is cancelled" {
		t.Errorf("enqueue confirm a cancelled checkout: exit %d, stdout %q, stderr %q; want exit 1 and the order as it stands", r.code, r.stdout, r.stderr)
	}

	// A checkout still in progress holds its units, and reconcile agrees.
	s.mustRun(t, "enqueue", "order", "--id", "co-3", "--customer", "c-9", "--hold", "10m", "CK-1=1")
	var levels []map[string]any
	testsvc.Poll(t, 30*time.Second, "co-3's hold", func() bool {
		if err := json.Unmarshal([]byte(s.mustRun(t, "stockctl", "show", "--json", "CK-1")), &levels); err != nil {
			t.Fatalf("show --json: %v", err)
		}
		return levels[0]["held"] == 1.0
	})
	if levels[0]["available"] != 7.0 || levels[0]["sold"] != 2.0 {
		t.Errorf("show CK-1 = %v, want 7 available, 1 held, 2 sold", levels)
	}
	r = s.run(t, nil, "stockctl", "reconcile")
	if r.code != 0 || !strings.Contains(r.stdout, "CHECKOUT(pg)") {
		t.Errorf("reconcile with a checkout in progress: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A return: the sale is cancelled, its 2 units available again.
	if out := s.mustRun(t, "enqueue", "cancel", "co-1"); out != "order co-1: cancelled cancelled_after_sale\n" {
		t.Errorf("enqueue cancel co-1 after its sale printed %q", out)
	}
	s.mustRun(t, "enqueue", "cancel", "co-3")
	testsvc.Poll(t, 30*time.Second, "every unit to be back", func() bool {
		_ = json.Unmarshal([]byte(s.mustRun(t, "stockctl", "show", "--json", "CK-1")), &levels)
		return levels[0]["available"] == 10.0
	})
	if r := s.run(t, nil, "stockctl", "reconcile", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"returned": 2`) {
		t.Errorf("reconcile --json after the return: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"confirm", "never-1"}, 1, "enqueue confirm: not found: order never-1"},
		{[]string{"cancel", "bad id"}, 2, "enqueue cancel: usage: invalid: order_id must be characters"},
		{[]string{"cancel", "co-1", "--reason", strings.Repeat("r", 201)}, 2, "enqueue cancel: usage: invalid: reason is 201 characters, max 200"},
		{[]string{"confirm"}, 2, "enqueue confirm: usage: want confirm ID"},
		{[]string{"order", "--customer", "c-9", "--hold", "2h", "CK-1=1"}, 2, "enqueue order: usage: --hold 2h0m0s is over --max-hold 30m0s"},
		{[]string{"order", "--customer", "c-9", "--hold", "ten", "CK-1=1"}, 2, "enqueue order: usage: invalid value"},
	} {
		r := s.run(t, nil, "enqueue", c.args...)
		if r.code != c.code || !strings.HasPrefix(r.stderr, c.err) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("enqueue %q: exit %d, stderr %q; want exit %d and one line starting %q", c.args, r.code, r.stderr, c.code, c.err)
		}
	}
	for _, cmd := range []string{"confirm", "cancel"} {
		if r := s.run(t, nil, "enqueue", cmd, "-h"); r.code != 0 || !strings.Contains(r.stderr, "Usage: enqueue [flags] "+cmd+" ID") {
			t.Errorf("enqueue %s -h: exit %d, stderr %q", cmd, r.code, r.stderr)
		}
	}
	w.stop(t, 30*time.Second)
}
