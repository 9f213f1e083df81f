package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/devsvc"
)

// BuildCommands builds every command under cmd/ into a new temporary
// directory, with the given build tags. It takes no testing.TB because it
// runs from TestMain; cleanup removes the directory.
func BuildCommands(tags ...string) (dir string, cleanup func(), err error) {
	root, err := devsvc.ModuleRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err = os.MkdirTemp("", "stockgate-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	args := []string{"build"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", dir+string(filepath.Separator), "./cmd/...")
	build := exec.Command("go", args...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return dir, cleanup, nil
}

// MainWithCommands is the TestMain of a package that runs the real
// binaries: it builds them with tags, sets *binDir to their directory, runs
// the tests and ends as Finish does. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.MainWithCommands(m, &binDir)) }
func MainWithCommands(m *testing.M, binDir *string, tags ...string) int {
	dir, cleanup, err := BuildCommands(tags...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build commands: %v\n", err)
		return Finish(1)
	}
	*binDir = dir
	code := m.Run()
	cleanup()
	return Finish(code)
}

// pipeGrace is how long Wait keeps reading a process's output after it
// exited. The pipes reach EOF at once unless a child the process left
// behind holds them open; then Wait would block as long as that child runs.
const pipeGrace = 10 * time.Second

// CommandResult is what a command that ran to its end printed, and its exit
// code (-1 when a signal ended it).
type CommandResult struct {
	Stdout, Stderr string
	Code           int
}

// RunCommand runs the program at path with env as its whole environment
// and waits for it. A non-zero exit is the caller's to judge; a program
// that cannot start, or is still running after timeout, fails the test: a
// hung command killed at the deadline is not a command that failed.
func RunCommand(tb testing.TB, timeout time.Duration, path string, env []string, args ...string) CommandResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.WaitDelay = pipeGrace
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err != nil && ctx.Err() != nil:
		// No output in the message: a caller may be keeping secrets out of the log.
		tb.Fatalf("%s %s: still running after %v; killed", filepath.Base(path), strings.Join(args, " "), timeout)
	case errors.As(err, &exit):
		return CommandResult{stdout.String(), stderr.String(), exit.ExitCode()}
	case err != nil:
		tb.Fatalf("%s %s: %v", filepath.Base(path), strings.Join(args, " "), err)
	}
	return CommandResult{stdout.String(), stderr.String(), 0}
}

// MustRunCommand is RunCommand for a command that must exit 0; it returns
// the command's stdout.
func MustRunCommand(tb testing.TB, timeout time.Duration, path string, env []string, args ...string) string {
	tb.Helper()
	r := RunCommand(tb, timeout, path, env, args...)
	if r.Code != 0 {
		tb.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", filepath.Base(path), strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Process is a long-running program started by StartProcess, with
// everything it prints kept.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's; written before done is closed

	mu             sync.Mutex
	stdout, stderr stream
	combined       bytes.Buffer

	redact func(string) string
}

// stream is one of the process's output pipes. Each write goes to the
// stream's own buffer at once, but into the combined output only line by
// line, so that a line on stdout is never cut by one on stderr.
type stream struct {
	p       *Process
	own     bytes.Buffer
	partial []byte // the unfinished last line, not yet in combined
}

func (s *stream) Write(b []byte) (int, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.own.Write(b)
	s.partial = append(s.partial, b...)
	if i := bytes.LastIndexByte(s.partial, '\n'); i >= 0 {
		s.p.combined.Write(s.partial[:i+1])
		s.partial = append(s.partial[:0], s.partial[i+1:]...)
	}
	return len(b), nil
}

// flush adds the unfinished last line to the combined output, once the
// pipe is closed. The caller holds p.mu.
func (s *stream) flush() {
	if len(s.partial) > 0 {
		s.p.combined.Write(s.partial)
		s.p.combined.WriteByte('\n')
		s.partial = nil
	}
}

// StartProcess starts the program at path with env as its whole
// environment. At the test's cleanup the process is killed and waited for,
// and when the test has failed the tail of its output is logged.
func StartProcess(tb testing.TB, path string, env []string, args ...string) *Process {
	tb.Helper()
	p := &Process{name: filepath.Base(path), done: make(chan struct{})}
	p.stdout.p, p.stderr.p = p, p
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	// Writers that are not files make Wait return only after the pipes are
	// drained, so the output is complete once Done is closed.
	p.cmd.WaitDelay = pipeGrace
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.stdout.flush()
		p.stderr.flush()
		p.mu.Unlock()
		p.err = err
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			out := p.Output()
			if p.redact != nil {
				out = p.redact(out)
			}
			tb.Logf("%s (pid %d) output, last 3000 bytes:\n%s", p.name, p.cmd.Process.Pid, tail(out, 3000))
		}
	})
	return p
}

// Redact passes the output the cleanup logs on failure through f, for a
// process whose output may hold secrets. Call it before anything can fail.
func (p *Process) Redact(f func(string) string) { p.redact = f }

// Output is what the process printed on stdout and stderr, line by line in
// the order the lines came. It is complete once Done is closed.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.combined.String()
}

// Tail is the last n bytes of Output.
func (p *Process) Tail(n int) string { return tail(p.Output(), n) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// Stdout is what the process printed on stdout alone.
func (p *Process) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.own.String()
}

// Stderr is what the process printed on stderr alone.
func (p *Process) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.own.String()
}

// Done is closed once the process has exited and its output is complete.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error (nil for status 0) once it has exited,
// and nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process's id, for a test that reads /proc about it.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill resumes the process (a test may have frozen it with SIGSTOP), ends
// it with SIGKILL and waits until it has exited.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends sig and waits for the process to exit, failing the test if it
// is still running after within. It returns the exit error.
func (p *Process) Stop(tb testing.TB, sig os.Signal, within time.Duration) error {
	tb.Helper()
	if err := p.Signal(sig); err != nil {
		tb.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		tb.Fatalf("%s still running %v after signal %v", p.name, within, sig)
		return nil
	}
}

// WaitReady polls http://adminAddr/readyz until it answers 200. It fails
// the test at once when p exits first: a process that died during start
// will never be ready. Its output is logged by p's cleanup.
func WaitReady(tb testing.TB, timeout time.Duration, adminAddr string, p *Process) {
	tb.Helper()
	Poll(tb, timeout, p.name+" /readyz to answer 200", func() bool {
		if p.Exited() {
			tb.Fatalf("%s exited during start: %v", p.name, p.Err())
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
