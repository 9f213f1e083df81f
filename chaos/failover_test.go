package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestClusterFailover: a 3-master, 3-replica Redis Cluster; in the middle of
// a sale (2,000 buyers for 1,000 units), the replica of the SKU's master falls behind (SIGSTOP, as a slow
// disk or a network stall would leave it), its master is killed (kill -9)
// and the replica is promoted. Three ways:
//
//   - wait: --redis-wait-replicas 1. No row is confirmed on a hold the
//     replica does not have, so the failover loses nothing an order relies
//     on: 0 oversold, 0 lost, 0 leaked, reconcile clean, and the failover
//     repair finds nothing to sell.
//   - nowait: asynchronous replication as Redis does by default. The
//     promoted replica lacks the holds of orders already confirmed; the
//     failover watcher fences the SKU, sells those units once and rebuilds
//     available, and the figures say how many there were.
//   - nowait-nowatch: the same with the watcher off (--failover-check 0):
//     what a failover costs with neither, and reconcile flags it.
//
// The queue's master and the SKU set's are kept off the victim: the WAIT
// covers the stock, not Asynq's enqueue (docs/reliability.md). Once the
// replica has taken over, the old master is started again and rejoins as
// its replica.
func TestClusterFailover(t *testing.T) {
	slow(t)
	for _, tc := range []struct {
		name        string
		wait, watch bool
	}{{"wait", true, true}, {"nowait", false, true}, {"nowait-nowatch", false, false}} {
		t.Run(tc.name, func(t *testing.T) { runFailover(t, tc.name, tc.wait, tc.watch) })
	}
}

func runFailover(t *testing.T, name string, wait, watch bool) {
	ctx := context.Background()
	start := time.Now()
	cl := testsvc.StartCluster(t, 3, 1, "--cluster-replica-validity-factor", "0")
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{})
	env := append(os.Environ(), "REDIS_URL="+cl.URL(), "REDIS_CLUSTER=true", "DATABASE_URL="+pg.URL("postgres"),
		"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=", "STOCKGATE_FAILPOINTS=")
	cc := cl.Client()
	t.Cleanup(func() { _ = cc.Close() })
	must := func(cmd string, args ...string) string {
		t.Helper()
		return testsvc.MustRunCommand(t, commandTimeout, filepath.Join(binDir, cmd), env, args...)
	}
	must("stockctl", "migrate")
	pool, err := pgxpool.New(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	s := newSale("TestClusterFailover/"+name, 1000, 2000)
	keep := []string{cl.SlotOwner(t, stock.Slot("orders")), cl.SlotOwner(t, stock.Slot(stock.SKUsKey))}
	for i := 0; ; i++ {
		sku := fmt.Sprintf("CHAOS-FO-%s-%d", name, i)
		if !slices.Contains(keep, cl.SlotOwner(t, stock.Slot(sku))) {
			s.sku = sku
			break
		}
	}
	master := cl.SlotOwner(t, stock.Slot(s.sku))
	victim, replica := nodeAt(t, cl, master), replicaOf(t, cl, master)
	must("stockctl", "set", s.sku, strconv.Itoa(s.units))

	args := []string{"--concurrency", "16", "--handler-timeout", "5s", "--hold-ttl", "1m"}
	if wait {
		args = append(args, "--redis-wait-replicas", "1")
	}
	if !watch {
		args = append(args, "--failover-check", "0")
	}
	var workers []*testsvc.Process
	for range 2 {
		port, err := testsvc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		admin := fmt.Sprintf("127.0.0.1:%d", port)
		w := testsvc.StartProcess(t, filepath.Join(binDir, "worker"), env, slices.Concat([]string{"--admin-addr", admin,
			"--sweep-interval", "500ms", "--retry-base", "100ms", "--retry-max", "2s", "--poll-interval", "20ms"}, args)...)
		testsvc.WaitReady(t, time.Minute, admin, w)
		workers = append(workers, w)
	}
	rows := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE order_id LIKE $1`, s.run+"-%").Scan(&n); err != nil {
			return -1
		}
		return n
	}
	// Enqueued alongside, so that the fault lands early in the sale, while
	// stock remains and every order still writes to Redis.
	enq := testsvc.StartProcess(t, filepath.Join(binDir, "enqueue"), env,
		"flash-sale", "--sku", s.sku, "--buyers", strconv.Itoa(s.buyers), "--run", s.run, "--concurrency", "16")
	testsvc.Poll(t, 2*time.Minute, "100 rows", func() bool { return rows() >= 100 })

	// The replica falls behind: the master goes on acknowledging writes it
	// alone has (and, with WAIT, the orders wait instead).
	if err := syscall.Kill(replica.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// What the master had already sent would still reach the replica from
	// its socket's buffer when it resumes: cut the link, so that whatever
	// the master acknowledges from now on is in its backlog alone.
	mc := victim.Client(0)
	if err := mc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE replica: %v", err)
	}
	_ = mc.Close()
	behind := rows()
	eventually(3*time.Second, func() bool { return rows() >= behind+150 })
	atKill := rows()
	var sold int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE order_id LIKE $1 AND status = 'confirmed'`, s.run+"-%").Scan(&sold); err != nil {
		t.Fatal(err)
	}
	if sold >= s.units {
		t.Fatalf("the stock was sold out (%d confirmed) before the failover; it tested nothing", sold)
	}
	victim.Stop() // SIGKILL
	if err := syscall.Kill(replica.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("replica stopped at %d rows, master killed at %d of %d", behind, atKill, s.buyers)
	testsvc.Poll(t, time.Minute, "the replica to take over", func() bool {
		return ownerOf(t, cl, stock.Slot(s.sku)) == replica.Addr
	})
	// The dead node comes back, as an operator would bring it back, and
	// rejoins as the new master's replica: with WAIT, the new master's SKUs
	// sell again only once it has one (docs/design.md, "Failover").
	if err := victim.Start(); err != nil {
		t.Fatalf("restart the old master: %v", err)
	}

	select {
	case <-enq.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("enqueue flash-sale still running two minutes after the failover")
	}
	if err := enq.Err(); err != nil {
		t.Fatalf("enqueue flash-sale: %v\n%s", err, enq.Tail(2000))
	}
	decided := eventually(5*time.Minute, func() bool { return rows() >= s.buyers })
	gate := stock.New(cc, stock.Config{})
	quiet := decided && eventually(2*time.Minute, func() bool {
		lv, err := gate.Show(ctx, s.sku)
		if err != nil || !lv[0].Stocked || lv[0].Held != 0 {
			return false
		}
		n, err := cc.ZCard(ctx, stock.DeadlinesKey(s.sku)).Result()
		return err == nil && n == 0
	})
	var confirmed, expired, failed, confirmedQty int64
	var total int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'confirmed'),
		count(*) FILTER (WHERE status = 'expired'), count(*) FILTER (WHERE status = 'failed'),
		coalesce((SELECT sum(l.qty) FROM order_lines l JOIN orders o USING (order_id)
			WHERE o.status = 'confirmed' AND l.sku = $2), 0)
		FROM orders WHERE order_id LIKE $1`, s.run+"-%", s.sku).Scan(
		&total, &confirmed, &expired, &failed, &confirmedQty); err != nil {
		t.Fatal(err)
	}
	lv, err := gate.Show(ctx, s.sku)
	if err != nil {
		t.Fatal(err)
	}
	l := lv[0]
	var repaired int64
	repairs := 0
	for _, w := range workers {
		repaired += lostUnits(w.Output())
		repairs += strings.Count(w.Output(), `"msg":"failover repair done"`)
	}
	stocked := int64(s.units)
	drift := confirmedQty - l.Sold // confirmed units Redis does not count as sold
	oversold := max(0, confirmedQty-stocked, l.Sold-stocked)
	rec := testsvc.RunCommand(t, commandTimeout, filepath.Join(binDir, "stockctl"), env, "reconcile")
	line := fmt.Sprintf("chaos: %-34s orders=%d rows=%d confirmed=%d expired=%d failed=%d repairs=%d lost_holds_repaired=%d unrepaired_drift=%d oversold=%d held=%d reconcile_exit=%d seconds=%.0f",
		"TestClusterFailover/"+name, s.buyers, total, confirmed, expired, failed, repairs, repaired, drift, oversold, l.Held, rec.Code, time.Since(start).Seconds())
	printFigures(line)

	// Every acknowledged order has its one row, and nothing stays held.
	if !decided || total != s.buyers {
		t.Errorf("%d of %d orders have their row; want all", total, s.buyers)
	}
	if !quiet {
		t.Errorf("units still held or orders in the deadlines set two minutes after the last row: %+v", l)
	}
	if watch {
		// With the repair, I1 holds and Redis agrees with Postgres; an
		// oversell could only come from lost units resold before the fence.
		if drift != 0 || l.Available < 0 || (oversold == 0 && l.Total() != stocked) {
			t.Errorf("after the repair: %+v, confirmed %d units; want sold = confirmed and I1", l, confirmedQty)
		}
		if (rec.Code == 0) != (oversold == 0) {
			t.Errorf("stockctl reconcile exit %d with %d oversold:\n%s%s", rec.Code, oversold, rec.Stdout, rec.Stderr)
		}
	}
	if watch && repairs == 0 {
		t.Errorf("no worker logged a failover repair")
	}
	if wait && (oversold != 0 || repaired != 0) {
		t.Errorf("with WAIT: %d oversold, %d units of confirmed orders lost by the failover; want 0, 0", oversold, repaired)
	}
	if !watch {
		// Reconcile must see whatever the failover took.
		if (rec.Code == 0) != (drift == 0 && oversold == 0) {
			t.Errorf("stockctl reconcile exit %d with a drift of %d units:\n%s%s", rec.Code, drift, rec.Stdout, rec.Stderr)
		}
		if drift > 0 && !strings.Contains(rec.Stdout+rec.Stderr, s.sku) {
			t.Errorf("stockctl reconcile does not name %s:\n%s%s", s.sku, rec.Stdout, rec.Stderr)
		}
	}
}

var lostUnitsRE = regexp.MustCompile(`"msg":"failover repair done"[^\n]*"lost_units":(\d+)`)

// lostUnits sums the units the worker's failover repairs sold.
func lostUnits(out string) int64 {
	var n int64
	for _, m := range lostUnitsRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

// ownerOf is the master serving slot, "" while none does (mid-failover).
func ownerOf(t *testing.T, cl *testsvc.Cluster, slot int) string {
	t.Helper()
	for _, sh := range cl.Shards(t) {
		for _, r := range sh.Slots {
			if int64(slot) >= r.Start && int64(slot) <= r.End {
				return sh.Master
			}
		}
	}
	return ""
}

func nodeAt(t *testing.T, cl *testsvc.Cluster, addr string) *testsvc.Redis {
	t.Helper()
	for _, n := range cl.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("no node at %s", addr)
	return nil
}

// replicaOf is the node that replicates the master at addr.
func replicaOf(t *testing.T, cl *testsvc.Cluster, addr string) *testsvc.Redis {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	for _, n := range cl.Nodes {
		c := n.Client(0)
		info, err := c.Info(context.Background(), "replication").Result()
		_ = c.Close()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r\n") {
			return n
		}
	}
	t.Fatalf("no replica of %s", addr)
	return nil
}
