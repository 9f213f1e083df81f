package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestKillWorkerMidSale: a worker is killed with SIGKILL while a sale is
// under way, with orders in flight between reserve and commit. Asynq hands
// its leased tasks to the surviving workers once the lease expires (about a
// minute and a half), and every order still ends in exactly one row, with
// sold equal to the confirmed quantities and no hold left.
func TestKillWorkerMidSale(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for Asynq's lease recovery (~90s)")
	}
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	const units, buyers = 300, 1500
	s.mustRun(t, "stockctl", "set", "KILL-1", fmt.Sprint(units))
	victim := s.startWorker(t, nil, "--concurrency", "32", "--retry-base", "100ms")
	s.startWorker(t, nil, "--concurrency", "8", "--retry-base", "100ms")

	if r := s.run(t, nil, "enqueue", "flash-sale", "--sku", "KILL-1", "--buyers", fmt.Sprint(buyers), "--concurrency", "16"); r.code != 0 {
		t.Fatalf("enqueue flash-sale: exit %d: %s", r.code, r.stderr)
	}
	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	rows := func() (n int) {
		_ = pool.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n)
		return n
	}
	testsvc.Poll(t, time.Minute, "the sale to be under way", func() bool { return rows() >= 200 })
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 worker: %v", err)
	}
	t.Logf("killed a worker with %d of %d rows written", rows(), buyers)
	s.startWorker(t, nil, "--concurrency", "16", "--retry-base", "100ms")

	testsvc.Poll(t, 4*time.Minute, "every order to have its row after the kill", func() bool { return rows() == buyers })
	var confirmed, rejected, other int
	if err := pool.QueryRow(context.Background(), `SELECT
		count(*) FILTER (WHERE status = 'confirmed'),
		count(*) FILTER (WHERE status = 'rejected' AND reason = 'out_of_stock'),
		count(*) FILTER (WHERE status NOT IN ('confirmed', 'rejected'))
		FROM orders`).Scan(&confirmed, &rejected, &other); err != nil {
		t.Fatal(err)
	}
	if confirmed != units || rejected != buyers-units || other != 0 {
		t.Errorf("after the kill: %d confirmed, %d out_of_stock, %d other; want %d, %d, 0", confirmed, rejected, other, units, buyers-units)
	}
	// The commit of an order decided just before the kill may still be
	// in a retry: reconcile is clean once it lands.
	testsvc.Poll(t, time.Minute, "reconcile to be clean", func() bool {
		return s.run(t, nil, "stockctl", "reconcile").code == 0
	})
	t.Logf("lost 0, oversold 0, leaked 0: %d confirmed, %d rejected", confirmed, rejected)
}
