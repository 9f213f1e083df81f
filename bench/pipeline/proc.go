package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 10 * time.Millisecond

// cpuTimes reads a process's user and system time from /proc/PID/stat.
// With children it adds the time of its children that have exited and
// been waited for, which is where a Postgres postmaster's finished
// backends end up.
func cpuTimes(pid int, children bool) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after it start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	n := 2
	if children {
		n = 4
	}
	var ticks int64
	for _, v := range f[11 : 11+n] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * clockTick, nil
}

// parentOf reads field 4 of /proc/PID/stat.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// treeCPU is the CPU of a server that forks a process per connection (a
// Postgres postmaster): the postmaster with its waited-for children, plus
// every child still running.
func treeCPU(root int) (time.Duration, error) {
	total, err := cpuTimes(root, true)
	if err != nil {
		return 0, err
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == root || parentOf(pid) != root {
			continue
		}
		if t, err := cpuTimes(pid, false); err == nil {
			total += t
		}
	}
	return total, nil
}

// meter samples the CPU of the processes a run involves. Processes that
// the benchmark runs to completion (enqueue, pgbench) are measured from
// their rusage instead.
type meter struct {
	procs map[string]func() (time.Duration, error)
}

func (m meter) sample() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for name, f := range m.procs {
		t, err := f()
		if err != nil {
			return nil, fmt.Errorf("cpu of %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func delta(a, b map[string]time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}
