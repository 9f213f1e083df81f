package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// newClusterStack is newStack on a Redis Cluster of the test's own:
// masters masters, each with replicas replicas, and every command in
// cluster mode with all the nodes as seeds.
func newClusterStack(t *testing.T, masters, replicas int, extraEnv ...string) (*stack, *testsvc.Cluster) {
	t.Helper()
	cl := testsvc.StartCluster(t, masters, replicas)
	s := &stack{env: append(os.Environ(),
		"REDIS_URL="+cl.URL(), "REDIS_CLUSTER=true",
		"DATABASE_URL="+testsvc.NewDatabase(t),
		"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=",
	)}
	s.env = append(s.env, extraEnv...)
	return s, cl
}

// skusOnEveryMaster returns one SKU per master of cl, named prefix-N.
func skusOnEveryMaster(t *testing.T, cl *testsvc.Cluster, prefix string) []string {
	t.Helper()
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < len(cl.Shards(t)) && i < 1000; i++ {
		sku := fmt.Sprintf("%s-%d", prefix, i)
		if m := cl.SlotOwner(t, stock.Slot(sku)); byMaster[m] == "" {
			byMaster[m] = sku
		}
	}
	skus := slices.Sorted(func(yield func(string) bool) {
		for _, s := range byMaster {
			if !yield(s) {
				return
			}
		}
	})
	if len(skus) != len(cl.Shards(t)) {
		t.Fatalf("found SKUs on %d masters, want %d", len(skus), len(cl.Shards(t)))
	}
	return skus
}

// saleSummary is enqueue flash-sale --json's output.
type saleSummary struct {
	Enqueued, Confirmed, Rejected, Failed, Expired int
}

func parseSale(t *testing.T, out string) saleSummary {
	t.Helper()
	var sum saleSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("flash-sale --json output %q: %v", out, err)
	}
	return sum
}

// TestClusterFlashSale: the README's flash sale on a 3-master Redis
// Cluster, through the real commands in cluster mode: 5,000 buyers for 100
// units across two workers, exactly 100 confirmed, reconcile clean, and the
// admin endpoints (asynqmon included) working against the cluster.
func TestClusterFlashSale(t *testing.T) {
	t.Parallel()
	s, cl := newClusterStack(t, 3, 0)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "CFS-1", "100")
	w := s.startWorker(t, nil, "--concurrency", "32")
	s.startWorker(t, nil, "--concurrency", "32")

	const buyers = 5000
	sum := parseSale(t, s.mustRun(t, "enqueue", "flash-sale", "--sku", "CFS-1", "--buyers", fmt.Sprint(buyers),
		"--concurrency", "32", "--wait", "--json"))
	if sum != (saleSummary{Enqueued: buyers, Confirmed: 100, Rejected: buyers - 100}) {
		t.Errorf("flash-sale summary = %+v, want %d enqueued, 100 confirmed, %d rejected, none failed or expired", sum, buyers, buyers-100)
	}
	var levels []stock.Levels
	if err := json.Unmarshal([]byte(s.mustRun(t, "stockctl", "show", "--json")), &levels); err != nil {
		t.Fatalf("show --json: %v", err)
	}
	if want := []stock.Levels{{SKU: "CFS-1", Sold: 100, Stocked: true}}; !slices.Equal(levels, want) {
		t.Errorf("show --json = %+v, want %+v", levels, want)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}

	if code, body := get(t, "http://"+w.admin+"/monitoring/api/queues"); code != http.StatusOK || !strings.Contains(body, `"queue":"orders"`) {
		t.Errorf("/monitoring/api/queues = %d %s, want 200 listing the orders queue", code, body)
	}
	if code, metrics := get(t, "http://"+w.admin+"/metrics"); code != http.StatusOK || !strings.Contains(metrics, `stockgate_queue_tasks{`) ||
		!strings.Contains(metrics, `sku="CFS-1"`) {
		t.Errorf("/metrics = %d, want the queue and stock gauges", code)
	}
	out := w.Output()
	if strings.Contains(out, `"level":"ERROR"`) {
		t.Errorf("worker logged errors:\n%s", out)
	}
	// The test's nodes run without AOF: the start-up check warns once per
	// master, naming it.
	for _, sh := range cl.Shards(t) {
		if !strings.Contains(out, `"redis_node":"`+sh.Master+`"`) || strings.Count(out, "appendonly is off") != 3 {
			t.Errorf("worker output lacks one AOF warning per master (%s among them):\n%s", sh.Master, out)
		}
	}
}

// TestClusterOrdersAcrossSlots: multi-line orders whose SKUs live on three
// different masters are all or nothing end to end. 200 buyers each want
// one of every SKU; the third SKU has 30 units, so exactly 30 orders are
// confirmed and the other 170, short on one master only, take nothing from
// the other two: no partial hold survives. An order through the storefront
// API in cluster mode goes the same way.
func TestClusterOrdersAcrossSlots(t *testing.T) {
	t.Parallel()
	s, cl := newClusterStack(t, 3, 0)
	skus := skusOnEveryMaster(t, cl, "XS")
	s.mustRun(t, "stockctl", "migrate")
	stocked := map[string]int64{skus[0]: 50, skus[1]: 50, skus[2]: 30}
	for _, sku := range skus {
		s.mustRun(t, "stockctl", "set", sku, fmt.Sprint(stocked[sku]))
	}
	s.startWorker(t, nil, "--concurrency", "32")

	const buyers = 200
	var file strings.Builder
	ids := make([]string, buyers)
	for i := range ids {
		ids[i] = fmt.Sprintf("xs-%d", i)
		o := orders.Order{OrderID: ids[i], CustomerID: fmt.Sprintf("c-%d", i), Lines: []orders.Line{
			{SKU: skus[0], Qty: 1}, {SKU: skus[1], Qty: 1}, {SKU: skus[2], Qty: 1}}}
		b, err := orders.Encode(o)
		if err != nil {
			t.Fatal(err)
		}
		file.Write(b)
		file.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "orders.ndjson")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := s.mustRun(t, "enqueue", "file", path); !strings.Contains(out, fmt.Sprintf("enqueued %d,", buyers)) {
		t.Fatalf("enqueue file: %q, want %d enqueued", out, buyers)
	}

	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	store := orderstore.New(pool)
	var st orderstore.Stats
	testsvc.Poll(t, 2*time.Minute, "every order to have its row", func() bool {
		st, err = store.Stats(context.Background(), ids)
		return err == nil && st.Decided == buyers
	})
	if st.Confirmed != 30 || st.Reasons[orders.ReasonOutOfStock] != buyers-30 {
		t.Errorf("Stats = %+v, want 30 confirmed and %d out_of_stock", st, buyers-30)
	}
	cc := cl.Client()
	defer cc.Close()
	wantSettled(t, cc, skus, map[string]stock.Levels{
		skus[0]: {SKU: skus[0], Available: 20, Sold: 30, Stocked: true},
		skus[1]: {SKU: skus[1], Available: 20, Sold: 30, Stocked: true},
		skus[2]: {SKU: skus[2], Available: 0, Sold: 30, Stocked: true},
	})

	// The API in cluster mode: an order for the two SKUs still in stock.
	_, addr := s.startServer(t, "api", "--addr", nil)
	body := fmt.Sprintf(`{"order_id":"xs-api","customer_id":"c-api","lines":[{"sku":%q,"qty":2},{"sku":%q,"qty":3}]}`, skus[0], skus[1])
	resp, err := http.Post("http://"+addr+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/orders = %d, want 202", resp.StatusCode)
	}
	if code, got := get(t, "http://"+addr+"/v1/orders/xs-api?wait=20s"); code != http.StatusOK || !strings.Contains(got, `"status":"confirmed"`) {
		t.Errorf("GET /v1/orders/xs-api?wait = %d %s, want confirmed", code, got)
	}
	wantSettled(t, cc, skus, map[string]stock.Levels{
		skus[0]: {SKU: skus[0], Available: 18, Sold: 32, Stocked: true},
		skus[1]: {SKU: skus[1], Available: 17, Sold: 33, Stocked: true},
		skus[2]: {SKU: skus[2], Available: 0, Sold: 30, Stocked: true},
	})
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// wantSettled waits until every SKU's counters are want's and no SKU has
// an open hold (its deadlines set is empty) on any master.
func wantSettled(t *testing.T, cc *redis.ClusterClient, skus []string, want map[string]stock.Levels) {
	t.Helper()
	g := stock.New(cc, stock.Config{})
	ctx := context.Background()
	var got []stock.Levels
	var open int64
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if got, err = g.Show(ctx, skus...); err == nil {
			open, err = g.OpenHolds(ctx)
		}
		if err == nil && open == 0 && slices.EqualFunc(got, skus, func(l stock.Levels, s string) bool { return l == want[s] }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1m: Show = %+v, %d open holds, %v; want %+v and no open hold", got, open, err, want)
		}
	}
}

// TestClusterQueueShards: with --queue-shards 3 the order queue is three
// queues, and with each shard's slot on a master of its own, the tasks of
// one sale sit on all three masters (CLUSTER KEYSLOT of each queue's keys,
// and the master CLUSTER SHARDS names for that slot, holding them). Every
// order still ends in one row when each is delivered twice.
func TestClusterQueueShards(t *testing.T) {
	t.Parallel()
	s, cl := newClusterStack(t, 3, 0, "QUEUE_SHARDS=3")
	queues := orders.Queues(3)
	// The even split puts orders-0 (slot 15206) and orders-1 (11079) on one
	// master (README "Queue shards"): give orders-1's slot to the master
	// that serves none of the three.
	used := map[string]bool{}
	for _, q := range queues {
		used[cl.SlotOwner(t, stock.Slot(q))] = true
	}
	for _, sh := range cl.Shards(t) {
		if !used[sh.Master] {
			cl.MoveEmptySlot(t, stock.Slot("orders-1"), sh.Master)
		}
	}
	s.mustRun(t, "stockctl", "migrate")
	const units, buyers = 60, 150
	s.mustRun(t, "stockctl", "set", "QS-1", fmt.Sprint(units))

	// Tasks first, workers after, so that every task is still pending when
	// its master is asked. Each order twice: once through enqueue (TaskID =
	// order id, on its shard), once more under another TaskID on the same
	// shard, as a producer retrying with a fresh id would.
	ids := make([]string, buyers)
	var file strings.Builder
	for i := range ids {
		ids[i] = fmt.Sprintf("qs-%d", i)
		b, err := orders.Encode(orders.Order{OrderID: ids[i], CustomerID: fmt.Sprintf("c-%d", i), Lines: []orders.Line{{SKU: "QS-1", Qty: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		file.Write(b)
		file.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "orders.ndjson")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.mustRun(t, "enqueue", "file", path)
	// The same orders again through enqueue: TaskID dedupe holds per shard.
	if r := s.run(t, nil, "enqueue", "file", path); r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("enqueued 0, invalid 0, duplicate %d", buyers)) {
		t.Errorf("enqueue file again: exit %d, %q; want exit 1 and every order a duplicate", r.code, r.stdout)
	}
	cc := cl.Client()
	defer cc.Close()
	ac := asynq.NewClientFromRedisClient(cc)
	defer ac.Close()
	for i, id := range ids {
		payload := []byte(strings.Split(file.String(), "\n")[i])
		task := asynq.NewTask(orders.TaskType, payload, asynq.Queue(orders.QueueFor(id, 3)),
			asynq.TaskID(id+"-again"), asynq.MaxRetry(5), asynq.Retention(time.Hour))
		if _, err := ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue %s again: %v", id, err)
		}
	}

	ctx := context.Background()
	masters := map[string]bool{}
	for _, q := range queues {
		key := "asynq:{" + q + "}:pending"
		slot, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil || slot != int64(stock.Slot(q)) {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; want %d", key, slot, err, stock.Slot(q))
		}
		owner := cl.SlotOwner(t, int(slot))
		// Asked of the owner alone: a node that does not serve the slot
		// answers MOVED, not the length.
		direct := redis.NewClient(&redis.Options{Addr: owner})
		n, err := direct.LLen(ctx, key).Result()
		_ = direct.Close()
		if err != nil || n == 0 {
			t.Errorf("LLEN %s on its master %s = %d, %v; want its pending tasks", key, owner, n, err)
		}
		masters[owner] = true
	}
	if len(masters) != 3 {
		t.Errorf("the three shards sit on %d masters, want 3", len(masters))
	}

	w := s.startWorker(t, nil, "--concurrency", "16")
	s.startWorker(t, nil, "--concurrency", "16")
	insp := asynq.NewInspectorFromRedisClient(cc)
	defer insp.Close()
	testsvc.Poll(t, 2*time.Minute, "both copies of every order to be processed", func() bool {
		done := 0
		for _, q := range queues {
			qi, err := insp.GetQueueInfo(q)
			if err != nil || qi.Pending+qi.Active+qi.Retry > 0 {
				return false
			}
			done += qi.Completed + qi.Archived
		}
		return done == 2*buyers
	})
	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := orderstore.New(pool).Stats(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decided != buyers || st.Confirmed != units || st.Reasons[orders.ReasonOutOfStock] != buyers-units {
		t.Errorf("Stats = %+v, want %d rows: %d confirmed, %d out_of_stock", st, buyers, units, buyers-units)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, metrics := get(t, "http://"+w.admin+"/metrics")
	for _, q := range queues {
		if !strings.Contains(metrics, `queue="`+q+`"`) {
			t.Errorf("/metrics has no series for queue %s", q)
		}
	}
}

// TestQueueShardsChanged: orders placed on the one queue "orders" are still
// processed by a worker started with --queue-shards 3, which drains every
// order queue Asynq knows besides its shards, and says so.
func TestQueueShardsChanged(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "QC-1", "5")
	for i := range 8 {
		s.mustRun(t, "enqueue", "order", "--id", fmt.Sprintf("qc-%d", i), "--customer", "c-1", "QC-1=1")
	}
	w := s.startWorker(t, []string{"QUEUE_SHARDS=3"})
	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = fmt.Sprintf("qc-%d", i)
	}
	var st orderstore.Stats
	testsvc.Poll(t, time.Minute, "the orders of the old queue to have rows", func() bool {
		st, err = orderstore.New(pool).Stats(context.Background(), ids)
		return err == nil && st.Decided == len(ids)
	})
	if st.Confirmed != 5 || st.Reasons[orders.ReasonOutOfStock] != 3 {
		t.Errorf("Stats = %+v, want 5 confirmed, 3 out_of_stock", st)
	}
	if out := w.Output(); !strings.Contains(out, "also consuming an order queue outside --queue-shards") || !strings.Contains(out, `"queue":"orders"`) {
		t.Errorf("worker output lacks the warning about queue orders:\n%s", out)
	}
}
