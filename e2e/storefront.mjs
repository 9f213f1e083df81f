// storefront.mjs: a storefront backend in Node.js 20 (built-in fetch, no
// npm packages) against stockgate's HTTP API, run by TestNodeStorefront.
//
// It places ORDERS one-unit orders of SKU from distinct customers at once
// (CONCURRENCY in flight), retries some POSTs as a real storefront does (a
// resend after its answer, and a resend racing the first), then long-polls
// every order until it is decided. It prints one JSON line per order,
// {"order_id", "status", "reason"}, then a summary line {"summary": ...},
// and exits 1 on any answer a storefront should never get.
//
//   API_URL=http://127.0.0.1:8090 API_KEY=… SKU=SKU-1 ORDERS=2000 RUN=r1 node storefront.mjs

const api = process.env.API_URL ?? 'http://127.0.0.1:8090';
const sku = process.env.SKU ?? 'DEMO-SKU';
const count = Number(process.env.ORDERS ?? 2000);
const concurrency = Number(process.env.CONCURRENCY ?? 200);
const run = process.env.RUN ?? `node-${Date.now().toString(36)}`;
const headers = { 'Content-Type': 'application/json' };
if (process.env.API_KEY) headers.Authorization = `Bearer ${process.env.API_KEY}`;

const problems = [];
const codes = {};
const tally = (what, code) => { const k = `${what} ${code}`; codes[k] = (codes[k] ?? 0) + 1; };

async function post(body) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${api}/v1/orders`, { method: 'POST', headers, body });
      const json = await res.json();
      return { code: res.status, json, location: res.headers.get('location') };
    } catch (err) {
      // A connection refused or reset under load: a storefront resends.
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
  }
}

async function place(i) {
  const id = `${run}-${i}`;
  const body = JSON.stringify({
    order_id: id, customer_id: `c-${run}-${i}`, lines: [{ sku, qty: 1 }], placed_at: new Date().toISOString(),
  });
  // Every 25th order is sent twice at once, as after a client-side timeout.
  const racing = i % 25 === 0;
  const first = racing ? await Promise.all([post(body), post(body)]) : [await post(body)];
  for (const r of first) tally('POST', r.code);
  const accepted = first.filter((r) => r.code === 202);
  if (accepted.length !== 1 || first.some((r) => r.code !== 202 && r.code !== 200)) {
    problems.push(`${id}: first POSTs answered ${first.map((r) => r.code)}, want one 202 (and a 200 for the racing copy)`);
  }
  if (accepted[0] && accepted[0].location !== `/v1/orders/${id}`) {
    problems.push(`${id}: Location ${accepted[0].location}`);
  }
  // Every 10th is resent once its answer came: the same order, so 200.
  if (i % 10 === 0) {
    const again = await post(body);
    tally('POST retry', again.code);
    if (again.code !== 200 || again.json.order_id !== id) problems.push(`${id}: retry answered ${again.code} ${JSON.stringify(again.json)}`);
  }
  return id;
}

async function outcome(id) {
  for (;;) {
    const res = await fetch(`${api}/v1/orders/${encodeURIComponent(id)}?wait=10s`, { headers });
    tally('GET', res.status);
    const json = await res.json();
    if (res.status !== 200) {
      problems.push(`${id}: GET answered ${res.status} ${JSON.stringify(json)}`);
      return { order_id: id, status: 'error', reason: json.reason };
    }
    if (json.status !== 'pending') return { order_id: id, status: json.status, reason: json.reason };
  }
}

async function pool(n, work) {
  let next = 0;
  const out = new Array(n);
  const workers = Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await work(i);
    }
  });
  await Promise.all(workers);
  return out;
}

const start = Date.now();
const ids = await pool(count, place);
const placedSeconds = (Date.now() - start) / 1000;
const outcomes = await pool(ids.length, (i) => outcome(ids[i]));
for (const o of outcomes) console.log(JSON.stringify(o));
const byStatus = {};
for (const o of outcomes) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
console.log(JSON.stringify({ summary: { orders: count, by_status: byStatus, codes, placed_seconds: placedSeconds, seconds: (Date.now() - start) / 1000, problems } }));
// Not process.exit: it can cut off what console.log still has to write
// to a pipe, and the test reads every line.
process.exitCode = problems.length === 0 ? 0 : 1;
