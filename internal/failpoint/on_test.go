//go:build failpoints

package failpoint

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, name, action string
		at               int64
		sleep            time.Duration
	}{
		{"after_reserve=kill", "after_reserve", "kill", 0, 0},
		{"after_persist=kill@50", "after_persist", "kill", 50, 0},
		{" before_ack=sleep:2s@3", "before_ack", "sleep", 3, 2 * time.Second},
		{"before_commit=sleep:10ms", "before_commit", "sleep", 0, 10 * time.Millisecond},
	} {
		p, name, err := parse(c.in)
		if err != nil {
			t.Fatalf("parse(%q): %v", c.in, err)
		}
		if name != c.name || p.action != c.action || p.at != c.at || p.sleep != c.sleep {
			t.Errorf("parse(%q) = %s %+v", c.in, name, p)
		}
	}
	for _, bad := range []string{"", "kill", "=kill", "after_reserve=explode", "after_reserve=kill@0", "after_reserve=kill@a",
		"after_reserve=sleep:", "after_reserve=sleep:-1s", "after_reserv=kill", "x=kill"} {
		if _, _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}
