package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions configures a private Postgres server.
type PostgresOptions struct {
	// Password, when set, becomes the postgres superuser's password and TCP
	// connections must give it (scram-sha-256). Empty means trust.
	Password string
	// TLS, when set, turns ssl on and admits TCP connections over TLS only
	// (hostssl), so a plain connection is refused by the server.
	TLS *PostgresTLS
}

// PostgresTLS is the server's certificate and key, in PEM files. They are
// copied into the server's directory, since Postgres wants its key owned by
// the server's user and unreadable to anyone else.
type PostgresTLS struct {
	CertFile, KeyFile string
}

// Postgres is a private Postgres cluster (initdb'd for one test) listening
// on a free loopback port. Unlike the shared server that NewDatabase uses,
// it may be stopped, restarted and configured at will.
type Postgres struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string // everything the cluster owns; removed at cleanup

	data     string
	logFile  string
	bin      string
	as       []string // runuser prefix when we are root
	password string
	tls      bool

	mu sync.Mutex // serialises Start and Stop
}

// pgStartTimeout bounds pg_ctl's own wait for the server (crash recovery
// after an immediate stop included) and ours for it to accept connections.
const pgStartTimeout = 60 * time.Second

// StartPostgres initdb's a cluster into a fresh directory, starts it on a
// free 127.0.0.1 port and waits until it accepts connections. The cluster
// is stopped (immediate) and its directory removed at the test's cleanup.
//
// Postgres refuses to run as root, so as root the cluster belongs to the
// `postgres` OS user and every server tool runs through runuser.
func StartPostgres(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	bin, err := PostgresBinDir()
	if err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	p := &Postgres{bin: bin, password: opts.Password, tls: opts.TLS != nil}
	// Not tb.TempDir: its parents are private to root, and the postgres
	// user has to reach the data directory. os.TempDir is world-traversable.
	if p.Dir, err = os.MkdirTemp("", "stockgate-pg-"); err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	tb.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		_ = p.pgctl("stop", "-m", "immediate", "-w", "-t", "30")
		_ = os.RemoveAll(p.Dir)
	})
	if err := p.init(opts); err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	if err := p.Start(); err != nil {
		tb.Fatalf("StartPostgres: %v", err)
	}
	return p
}

// PostgresBinDir finds the directory holding initdb, pg_ctl and postgres:
// the newest /usr/lib/postgresql/VERSION/bin (Debian keeps them off PATH),
// else the one pg_ctl on PATH lives in. scripts/testenv.sh installs
// postgresql when neither exists.
func PostgresBinDir() (string, error) {
	has := func(dir string) bool {
		for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, tool)); err != nil || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if c, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(c); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", errors.New("no initdb/pg_ctl/postgres under /usr/lib/postgresql/*/bin or on PATH; " +
		"run the tests through scripts/testenv.sh, which installs postgresql, or apt-get install postgresql")
}

func (p *Postgres) init(opts PostgresOptions) error {
	var owner *user.User
	if os.Geteuid() == 0 {
		var err error
		if owner, err = user.Lookup("postgres"); err != nil {
			return fmt.Errorf("postgres refuses to run as root and there is no postgres OS user to run it as: %w", err)
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	p.Port = port
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.data = filepath.Join(p.Dir, "data")
	p.logFile = filepath.Join(p.Dir, "server.log")

	initArgs := []string{"-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	var secret []secretFile
	if opts.Password != "" {
		// A file, not an argument: ps would show an argument.
		pw := filepath.Join(p.Dir, "pwfile")
		secret = append(secret, secretFile{pw, []byte(opts.Password + "\n")})
		initArgs = append(initArgs, "--pwfile="+pw)
	}
	certFile, keyFile := filepath.Join(p.Dir, "server.crt"), filepath.Join(p.Dir, "server.key")
	if opts.TLS != nil {
		for _, c := range []struct{ from, to string }{{opts.TLS.CertFile, certFile}, {opts.TLS.KeyFile, keyFile}} {
			b, err := os.ReadFile(c.from)
			if err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			secret = append(secret, secretFile{c.to, b})
		}
	}
	for _, f := range secret {
		if err := os.WriteFile(f.path, f.body, 0o600); err != nil {
			return err
		}
	}
	if owner != nil {
		if err := chownAll(p.Dir, owner); err != nil {
			return err
		}
	}
	if out, err := p.tool("initdb", initArgs...); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if opts.Password != "" {
		_ = os.Remove(filepath.Join(p.Dir, "pwfile"))
	}

	conf := fmt.Sprintf(`
# stockgate private test cluster (internal/testsvc)
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 100
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
`, port, p.data)
	// Local (socket) connections stay trust: only the postgres OS user can
	// enter the data directory, and tests only ever come in over TCP.
	method, hostType := "trust", "host"
	if opts.Password != "" {
		method = "scram-sha-256"
		conf += "password_encryption = 'scram-sha-256'\n"
	}
	if opts.TLS != nil {
		hostType = "hostssl"
		conf += fmt.Sprintf("ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n", certFile, keyFile)
	}
	hba := fmt.Sprintf("local all all trust\n%s all all 127.0.0.1/32 %s\n", hostType, method)
	if err := writeConfig(filepath.Join(p.data, "postgresql.conf"), conf, false); err != nil {
		return err
	}
	return writeConfig(filepath.Join(p.data, "pg_hba.conf"), hba, true)
}

type secretFile struct {
	path string
	body []byte
}

func chownAll(dir string, u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// writeConfig appends to (or replaces) a file initdb made, keeping its
// owner and mode: root may write it, but postgres must still read it.
func writeConfig(path, text string, replace bool) error {
	flags := os.O_WRONLY | os.O_APPEND
	if replace {
		flags = os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tool runs a server binary as the cluster's owner, from / because that
// user may not enter the test's working directory.
func (p *Postgres) tool(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, p.as...), filepath.Join(p.bin, name)), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*pgStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The postmaster outlives pg_ctl; should it ever hold our pipe, do not
	// wait for it to close.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

func (p *Postgres) pgctl(args ...string) error {
	out, err := p.tool("pg_ctl", append([]string{"-D", p.data}, args...)...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// URL is the postgres:// URL of database db, as the superuser, with the
// password when there is one. Over TLS it says sslmode=require (encrypted,
// unverified); a test that checks the certificate sets its own sslmode and
// sslrootcert.
func (p *Postgres) URL(db string) string {
	u := url.URL{Scheme: "postgres", Host: p.Addr, Path: "/" + db, User: url.User("postgres")}
	if p.password != "" {
		u.User = url.UserPassword("postgres", p.password)
	}
	mode := "disable"
	if p.tls {
		mode = "require"
	}
	u.RawQuery = "sslmode=" + mode
	return u.String()
}

// Start starts the stopped cluster on its port and data directory and
// waits until it accepts connections. Recovery after an immediate stop is
// part of the wait.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.pgctl("start", "-l", p.logFile, "-w", "-t", strconv.Itoa(int(pgStartTimeout.Seconds())))
	if err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, p.logTail())
	}
	deadline := time.Now().Add(pgStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			_ = c.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on %s does not accept connections: %w\nserver log:\n%s", p.Addr, err, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the cluster down (fast: sessions are cut, no new ones
// admitted) and waits until it is gone, so Start may follow.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pgctl("stop", "-m", "fast", "-w", "-t", strconv.Itoa(int(pgStartTimeout.Seconds())))
}

func (p *Postgres) logTail() string {
	b, _ := os.ReadFile(p.logFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
