package stock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned by Reserve and Commit when WaitReplicas is
// set and fewer replicas than that acknowledged the call's writes within
// WaitTimeout. The writes were made on the master, so this is an
// infrastructure error: the caller retries, the holds stay, and no row may be
// written confirmed on holds a failover could still take away
// (docs/design.md, "Failover").
var ErrNotReplicated = errors.New("write not acknowledged by enough redis replicas")

// DefaultWaitTimeout bounds one WAIT when Config.WaitTimeout is zero.
const DefaultWaitTimeout = 500 * time.Millisecond

// WaitKey is written (a short-lived string) only when a batch's scripts
// wrote nothing on a master but one of its orders relies on an earlier
// write there, such as a redelivery finding its hold: WAIT counts the
// acknowledgements of the connection's last write, so the connection must
// make one after the write it relies on.
func WaitKey(sku string) string { return keyPrefix + "{" + sku + "}:wait" }

// runWaited sends a batch's script calls with WAIT: per master, one pipeline
// of the calls' EVALSHAs followed by WAIT on the same connection, since WAIT
// counts the replicas that have this connection's writes. A cluster client's
// own pipeline would route the keyless WAIT to any node, so each call goes
// through the client of the master that owns its slot (MasterForKey); the
// masters' pipelines run at once.
func (g *Gate) runWaited(ctx context.Context, calls []scriptCall) {
	byNode := map[redis.UniversalClient][]int{}
	var nodes []redis.UniversalClient
	for i, c := range calls {
		node, err := g.masterFor(ctx, c.keys[0])
		if err != nil {
			c.reply(nil, err)
			continue
		}
		if _, ok := byNode[node]; !ok {
			nodes = append(nodes, node)
		}
		byNode[node] = append(byNode[node], i)
	}
	var wg sync.WaitGroup
	for _, node := range nodes {
		wg.Go(func() { g.runOnMaster(ctx, node, calls, byNode[node]) })
	}
	wg.Wait()
}

// masterFor is the client that reaches the master of key's slot: the gate's
// own client on a single Redis.
func (g *Gate) masterFor(ctx context.Context, key string) (redis.UniversalClient, error) {
	cc, ok := g.rdb.(*redis.ClusterClient)
	if !ok {
		return g.rdb, nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("find the master of %s: %w", key, err)
	}
	return node, nil
}

// runOnMaster runs the calls at idx on one master, each with its WAIT.
func (g *Gate) runOnMaster(ctx context.Context, node redis.UniversalClient, calls []scriptCall, idx []int) {
	vals, errs := g.pipeWait(ctx, node, calls, idx, false)
	var again []int
	var againAt []int
	for k, i := range idx {
		if errs[k] != nil && redis.HasErrorPrefix(errs[k], "NOSCRIPT") {
			again, againAt = append(again, i), append(againAt, k)
		}
	}
	if len(again) > 0 {
		// A promoted replica or a restarted master without the script: the
		// whole script this time, with its own WAIT.
		v2, e2 := g.pipeWait(ctx, node, calls, again, true)
		for j, k := range againAt {
			vals[k], errs[k] = v2[j], e2[j]
		}
	}
	var wrote bool
	var relying []int
	for k, i := range idx {
		if errs[k] != nil || calls[i].effect == nil {
			continue
		}
		w, r := calls[i].effect(vals[k])
		wrote = wrote || w
		if r {
			relying = append(relying, k)
		}
	}
	if len(relying) > 0 && !wrote {
		if err := g.touchWait(ctx, node, calls[idx[relying[0]]].sku); err != nil {
			for _, k := range relying {
				vals[k], errs[k] = nil, err
			}
		}
	}
	for k, i := range idx {
		calls[i].reply(vals[k], errs[k])
	}
}

// pipeWait sends the calls at idx (EVALSHA, or EVAL when eval) and WAIT in
// one pipeline on node. A WAIT short of WaitReplicas fails every call that
// had no error of its own.
func (g *Gate) pipeWait(ctx context.Context, node redis.UniversalClient, calls []scriptCall, idx []int, eval bool) ([][]any, []error) {
	cmds := make([]*redis.Cmd, len(idx))
	var wait *redis.Cmd
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, i := range idx {
			c := calls[i]
			if eval {
				cmds[k] = c.script.Eval(ctx, p, c.keys, c.args...)
			} else {
				cmds[k] = c.script.EvalSha(ctx, p, c.keys, c.args...)
			}
		}
		wait = g.waitCmd(ctx, p)
		return nil
	})
	werr := g.waitErr(wait)
	vals, errs := make([][]any, len(idx)), make([]error, len(idx))
	for k := range idx {
		vals[k], errs[k] = cmds[k].Slice()
		if errs[k] == nil && werr != nil {
			vals[k], errs[k] = nil, werr
		}
	}
	return vals, errs
}

// touchWait makes one write on node's connection, then WAITs for it.
func (g *Gate) touchWait(ctx context.Context, node redis.UniversalClient, sku string) error {
	var wait *redis.Cmd
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, WaitKey(sku), "1", time.Minute)
		wait = g.waitCmd(ctx, p)
		return nil
	})
	if werr := g.waitErr(wait); werr != nil {
		return werr
	}
	return err
}

// waitCmd queues WAIT on p. Pipeliner has no Wait method (go-redis puts it
// on the clients only), so it goes as a plain command.
func (g *Gate) waitCmd(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
	return p.Do(ctx, "wait", g.waitReplicas, max(g.waitTimeout.Milliseconds(), 1))
}

func (g *Gate) waitErr(wait *redis.Cmd) error {
	n, err := wait.Int64()
	if err != nil {
		g.staleRoutes()
		return fmt.Errorf("%w: wait: %w", ErrNotReplicated, err)
	}
	if n < int64(g.waitReplicas) {
		return fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, g.waitReplicas, g.waitTimeout)
	}
	return nil
}

// staleRoutes has a cluster client reload its slot map: the calls here go
// straight to a master's client, so the cluster client does not see the
// errors that would make it notice a failover.
func (g *Gate) staleRoutes() {
	if cc, ok := g.rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// reserveEffect reads a reserve reply: code 1 wrote a hold; 2 and 3 found
// one an earlier call wrote.
func reserveEffect(vals []any) (wrote, relies bool) {
	for k := 0; k+3 < len(vals); k += 4 {
		switch code, _ := vals[k].(int64); code {
		case 1:
			wrote = true
		case 2, 3:
			relies = true
		}
	}
	return wrote, relies
}

// commitEffect reads a commit reply: units sold or released wrote; an
// order that moved nothing found its tombstone (or nothing) from earlier.
func commitEffect(vals []any) (wrote, relies bool) {
	for k := 0; k+3 < len(vals); k += 4 {
		units, _ := vals[k].(int64)
		released, _ := vals[k+3].(int64)
		if units > 0 || released > 0 {
			wrote = true
		} else {
			relies = true
		}
	}
	return wrote, relies
}
