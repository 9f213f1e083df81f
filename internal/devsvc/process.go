package devsvc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Alive reports whether process pid runs. A zombie does not count: a
// daemon whose parent has exited may wait a while for someone to reap it.
func Alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// Cmdline is the argument vector of process pid, or nil when it is gone.
func Cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// ErrKilled says a process ignored SIGTERM for its whole grace period and
// was killed.
var ErrKilled = errors.New("did not stop within its grace period of SIGTERM; killed it")

// StopPidFile stops the process whose pid is in pidFile when it is alive
// and ours says it is (a recycled pid must not make us signal someone
// else's process): SIGTERM, then SIGKILL after grace. It returns the pid it
// signalled, or 0 when there was nothing of ours to stop. The pid file is
// removed either way.
func StopPidFile(pidFile string, ours func(argv []string) bool, grace time.Duration) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, nil
	}
	defer os.Remove(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !Alive(pid) || !ours(Cmdline(pid)) {
		return 0, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return pid, fmt.Errorf("signal %d: %w", pid, err)
	}
	deadline := time.Now().Add(grace)
	for Alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return pid, fmt.Errorf("pid %d (%v): %w", pid, grace, ErrKilled)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pid, nil
}

// tailBuffer keeps the last few KiB written to it: a server's start-up
// complaint, for the error that says it did not start.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// tailFile is the last n bytes of a log file, for an error message.
func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
