package testsvc

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessOutputCompleteAtExit: once Done is closed, everything the
// process printed is there, its unfinished last line included, on each
// stream and in the combined output. The e2e harness used to lose the last
// line now and then; many short runs give that race its chances.
func TestProcessOutputCompleteAtExit(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		script := fmt.Sprintf(`printf 'out %d\n'; printf 'err %d\n' >&2; printf 'last %d'; exit 3`, i, i, i)
		p := StartProcess(t, "/bin/sh", nil, "-c", script)
		<-p.Done()
		var exit *exec.ExitError
		if !errors.As(p.Err(), &exit) || exit.ExitCode() != 3 {
			t.Fatalf("run %d: Err() = %v, want exit status 3", i, p.Err())
		}
		wantOut, wantErr := fmt.Sprintf("out %d\nlast %d", i, i), fmt.Sprintf("err %d\n", i)
		if p.Stdout() != wantOut || p.Stderr() != wantErr {
			t.Fatalf("run %d: stdout %q, stderr %q; want %q, %q", i, p.Stdout(), p.Stderr(), wantOut, wantErr)
		}
		out := p.Output()
		for _, line := range []string{fmt.Sprintf("out %d\n", i), wantErr, fmt.Sprintf("last %d\n", i)} {
			if strings.Count(out, line) != 1 {
				t.Fatalf("run %d: Output() = %q, want %q once", i, out, line)
			}
		}
	}
}

// TestProcessKillResumesStopped: Kill ends a process a test froze with
// SIGSTOP, and Exited and Err say so.
func TestProcessKillResumesStopped(t *testing.T) {
	t.Parallel()
	p := StartProcess(t, "/bin/sleep", nil, "300")
	if p.Exited() || p.Err() != nil {
		t.Fatalf("a running process: Exited() %v, Err() %v", p.Exited(), p.Err())
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if !p.Exited() || p.Err() == nil || !strings.Contains(p.Err().Error(), "killed") {
		t.Errorf("after Kill: Exited() %v, Err() %v; want true, signal: killed", p.Exited(), p.Err())
	}
}

func TestRunCommand(t *testing.T) {
	t.Parallel()
	r := RunCommand(t, time.Minute, "/bin/sh", []string{"A=1"}, "-c", `echo "a=$A"; echo oops >&2; exit 2`)
	if r != (CommandResult{Stdout: "a=1\n", Stderr: "oops\n", Code: 2}) {
		t.Errorf("RunCommand = %+v, want stdout a=1, stderr oops, code 2", r)
	}
	if out := MustRunCommand(t, time.Minute, "/bin/echo", nil, "fine"); out != "fine\n" {
		t.Errorf("MustRunCommand = %q, want fine", out)
	}
}

// fatalTB records the first Fatalf and ends the goroutine as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn with a fatalTB over t and returns what fn failed with.
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

// TestRunCommandHung: a command still running at its timeout fails the
// test, rather than passing for one that exited non-zero.
func TestRunCommandHung(t *testing.T) {
	t.Parallel()
	msg := fatalOf(t, func(tb testing.TB) { RunCommand(tb, 100*time.Millisecond, "/bin/sleep", nil, "300") })
	if !strings.Contains(msg, "still running after 100ms") {
		t.Errorf("RunCommand of a hung command failed with %q, want still running", msg)
	}
	msg = fatalOf(t, func(tb testing.TB) { MustRunCommand(tb, time.Minute, "/bin/sh", nil, "-c", "echo no >&2; exit 1") })
	if !strings.Contains(msg, "exit 1") || !strings.Contains(msg, "stderr: no") {
		t.Errorf("MustRunCommand of a failing command failed with %q, want its exit code and stderr", msg)
	}
}

// TestWaitReadyProcessExited: WaitReady gives up at once on a process that
// has exited, not at its timeout.
func TestWaitReadyProcessExited(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := StartProcess(t, "/bin/sh", nil, "-c", "exit 1")
	msg := fatalOf(t, func(tb testing.TB) { WaitReady(tb, time.Minute, fmt.Sprintf("127.0.0.1:%d", port), p) })
	if !strings.Contains(msg, "sh exited during start: exit status 1") {
		t.Errorf("WaitReady failed with %q, want the process's exit", msg)
	}
}
