//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with failpoints.
const Enabled = true

// Env is the variable that arms the failpoints.
const Env = "STOCKGATE_FAILPOINTS"

type point struct {
	action string // kill or sleep
	sleep  time.Duration
	at     int64 // 0: every hit (sleep) or the first (kill)
	hits   atomic.Int64
}

// Steps are the names Inject is called with; arming any other name is a
// typo that would inject nothing.
var Steps = []string{"after_reserve", "after_persist", "before_commit", "before_ack", "after_transition"}

var (
	once   sync.Once
	points map[string]*point
)

// The spec is read when the process starts, so a bad one stops the worker
// at once rather than at its first order.
func init() { once.Do(load) }

func load() {
	points = map[string]*point{}
	spec := strings.TrimSpace(os.Getenv(Env))
	if spec == "" {
		return
	}
	for _, item := range strings.Split(spec, ",") {
		p, name, err := parse(item)
		if err != nil {
			// A chaos test with a typo must not pass by injecting nothing.
			fmt.Fprintf(os.Stderr, "failpoint: %s=%q: %v\n", Env, item, err)
			os.Exit(2)
		}
		points[name] = p
	}
}

// parse reads one step=action[@n].
func parse(item string) (*point, string, error) {
	name, action, ok := strings.Cut(strings.TrimSpace(item), "=")
	if !ok || name == "" {
		return nil, "", fmt.Errorf("want step=action[@n]")
	}
	if !slices.Contains(Steps, name) {
		return nil, "", fmt.Errorf("unknown step %q (want one of %s)", name, strings.Join(Steps, ", "))
	}
	p := &point{}
	if a, n, ok := strings.Cut(action, "@"); ok {
		at, err := strconv.ParseInt(n, 10, 64)
		if err != nil || at < 1 {
			return nil, "", fmt.Errorf("@%s: want a count >= 1", n)
		}
		action, p.at = a, at
	}
	switch {
	case action == "kill":
		p.action = "kill"
	case strings.HasPrefix(action, "sleep:"):
		d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep:"))
		if err != nil || d <= 0 {
			return nil, "", fmt.Errorf("%s: want sleep:<duration>", action)
		}
		p.action, p.sleep = "sleep", d
	default:
		return nil, "", fmt.Errorf("unknown action %q (want kill or sleep:<duration>)", action)
	}
	return p, name, nil
}

// Inject runs the action armed for step, if any.
func Inject(step string) {
	once.Do(load)
	p := points[step]
	if p == nil {
		return
	}
	n := p.hits.Add(1)
	switch p.action {
	case "kill":
		if n != max(p.at, 1) {
			return
		}
		fmt.Fprintf(os.Stderr, "failpoint: %s hit %d: SIGKILL\n", step, n)
		// SIGKILL, not os.Exit: no deferred function, no flush, no Asynq
		// shutdown, exactly what a crash or the OOM killer leaves behind.
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is asynchronous; never run past the step
	case "sleep":
		if p.at == 0 || n == p.at {
			time.Sleep(p.sleep)
			// The chaos suite counts these to know a stalled attempt has
			// run on past the step.
			fmt.Fprintf(os.Stderr, "failpoint: %s hit %d: woke after %v\n", step, n, p.sleep)
		}
	}
}
