package devsvc

import (
	"bytes"
	"cmp"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres says the Postgres server binaries were not found.
var ErrNoPostgres = errors.New("no initdb, pg_ctl and postgres under /usr/lib/postgresql/*/bin or on PATH " +
	"(make test and make run install them: apt-get install postgresql; or set PG_BINDIR)")

// PostgresBinDir finds the directory holding initdb, pg_ctl and postgres:
// $PG_BINDIR when set (and then only it), else the newest
// /usr/lib/postgresql/VERSION/bin (Debian keeps them off PATH), else the
// directory the pg_ctl on PATH really lives in.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if !hasServerTools(d) {
			return "", fmt.Errorf("PG_BINDIR=%s holds no initdb, pg_ctl and postgres", d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, d := range dirs {
		if hasServerTools(d) {
			return d, nil
		}
	}
	if c, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(c); err == nil && hasServerTools(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", ErrNoPostgres
}

func hasServerTools(dir string) bool {
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, tool)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// PostgresTLS is the server's certificate and key, in PEM files. They are
// copied into the data directory, since Postgres wants its key owned by the
// server's user and unreadable to anyone else.
type PostgresTLS struct {
	CertFile, KeyFile string
}

// PostgresOptions configures a Postgres cluster.
type PostgresOptions struct {
	// Dir is the data directory (PGDATA); Init creates it. The server's
	// log, server.log, goes in it too. Required.
	Dir string
	// Port is the port to listen on when it is free; 0 or taken, another
	// free one.
	Port int
	// Password, when set, becomes the postgres superuser's password and TCP
	// connections must give it (scram-sha-256). Empty means trust.
	Password string
	// TLS, when set, turns ssl on and admits TCP connections over TLS only
	// (hostssl), so a plain connection is refused by the server.
	TLS *PostgresTLS
	// Throwaway trades durability for speed (no fsync, small buffers): a
	// cluster that lives as long as one test.
	Throwaway bool
}

func (o PostgresOptions) validate() error {
	if o.Dir == "" {
		return errors.New("postgres: Dir is required")
	}
	return nil
}

// Postgres is a Postgres cluster run with pg_ctl, listening on 127.0.0.1
// only, with no Unix socket. Postgres refuses to run as root, so as root
// the cluster belongs to the postgres OS user ($PG_RUN_USER overrides) and
// every server tool runs through runuser.
type Postgres struct {
	Addr    string // 127.0.0.1:PORT
	Port    int
	Dir     string // the data directory
	LogFile string

	opts  PostgresOptions
	bin   string
	as    []string   // runuser prefix when we are root
	owner *user.User // the cluster's OS user when we are root

	mu sync.Mutex // serialises Start and Stop
}

// pgStartTimeout bounds pg_ctl's own wait for the server (crash recovery
// after an immediate stop included) and ours for it to accept connections.
const pgStartTimeout = 60 * time.Second

// NewPostgres finds the server binaries and the OS user to run them as,
// and picks the port. It touches no file: Init makes the cluster, Start
// starts it.
func NewPostgres(opts PostgresOptions) (*Postgres, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	as, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	port, err := FreePort(opts.Port)
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: opts.Dir, LogFile: filepath.Join(opts.Dir, "server.log"), opts: opts, bin: bin, as: as, owner: owner}
	p.setPort(port)
	return p, nil
}

func (p *Postgres) setPort(port int) {
	p.Port = port
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// runAs is the command prefix that runs a server tool as the cluster's
// owner, and that owner: nothing unless we are root.
func runAs() ([]string, *user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	name := cmp.Or(os.Getenv("PG_RUN_USER"), "postgres")
	u, err := user.Lookup(name)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres refuses to run as root and there is no OS user %s to run it as (set PG_RUN_USER to an unprivileged user): %w", name, err)
	}
	if runuser, err := exec.LookPath("runuser"); err == nil {
		return []string{runuser, "-u", name, "--"}, u, nil
	}
	return []string{"su", "-s", "/bin/sh", name, "-c", `"$0" "$@"`}, u, nil
}

// Initialized reports whether Dir holds a cluster already.
func (p *Postgres) Initialized() bool {
	_, err := os.Stat(filepath.Join(p.Dir, "PG_VERSION"))
	return err == nil
}

// Init makes the cluster in Dir, which must be missing or empty, and
// configures it: loopback TCP only, no socket directory to own, and the
// authentication and TLS the options ask for.
func (p *Postgres) Init() error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	if err := p.own(p.Dir); err != nil {
		return err
	}
	if err := os.Chmod(p.Dir, 0o700); err != nil {
		return err
	}
	args := []string{"-D", p.Dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"}
	if p.opts.Throwaway {
		args = append(args, "--no-sync")
	}
	if p.opts.Password != "" {
		// A file, not an argument: ps would show an argument. Not in Dir,
		// which initdb wants empty.
		pw, err := os.CreateTemp("", "stockgate-pw-")
		if err != nil {
			return err
		}
		defer os.Remove(pw.Name())
		_, err = io.WriteString(pw, p.opts.Password+"\n")
		if err := errors.Join(err, pw.Close(), p.own(pw.Name())); err != nil {
			return err
		}
		args = append(args, "--pwfile="+pw.Name())
	}
	if out, err := p.tool("initdb", args...); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}

	conf := `
# stockgate (internal/devsvc): loopback TCP only, nothing public
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
`
	if p.opts.Throwaway {
		conf += "shared_buffers = 16MB\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
	}
	method, hostType := "trust", "host"
	if p.opts.Password != "" {
		method = "scram-sha-256"
		conf += "password_encryption = 'scram-sha-256'\n"
	}
	if t := p.opts.TLS; t != nil {
		hostType = "hostssl"
		for _, c := range []struct{ from, to string }{{t.CertFile, "server.crt"}, {t.KeyFile, "server.key"}} {
			b, err := os.ReadFile(c.from)
			if err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			to := filepath.Join(p.Dir, c.to)
			if err := os.WriteFile(to, b, 0o600); err != nil {
				return err
			}
			if err := p.own(to); err != nil {
				return err
			}
		}
		conf += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
	}
	// No local (socket) line is needed: there is no socket.
	hba := fmt.Sprintf("%s all all 127.0.0.1/32 %s\n", hostType, method)
	if err := writeConfig(filepath.Join(p.Dir, "postgresql.conf"), conf, false); err != nil {
		return err
	}
	return writeConfig(filepath.Join(p.Dir, "pg_hba.conf"), hba, true)
}

// own gives path to the cluster's OS user, when we are root.
func (p *Postgres) own(path string) error {
	if p.owner == nil {
		return nil
	}
	uid, err := strconv.Atoi(p.owner.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(p.owner.Gid)
	if err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}

// canReach reports whether the cluster's OS user may enter dir.
func (p *Postgres) canReach(dir string) bool {
	if p.as == nil {
		return true
	}
	_, err := p.run(append(slices.Clone(p.as), "test", "-x", dir))
	return err == nil
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
	_, err = io.WriteString(f, text)
	return errors.Join(err, f.Close())
}

// tool runs a server binary as the cluster's owner.
func (p *Postgres) tool(name string, args ...string) ([]byte, error) {
	return p.run(slices.Concat(p.as, []string{filepath.Join(p.bin, name)}, args))
}

// run runs argv from /, because the cluster's owner may not enter the
// working directory.
func (p *Postgres) run(argv []string) ([]byte, error) {
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
	out, err := p.tool("pg_ctl", append([]string{"-D", p.Dir}, args...)...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// URL is the postgres:// URL of database db, as the superuser, with the
// password when there is one. Over TLS it says sslmode=require (encrypted,
// unverified); a caller that checks the certificate sets its own sslmode
// and sslrootcert.
func (p *Postgres) URL(db string) string {
	u := url.URL{Scheme: "postgres", Host: p.Addr, Path: "/" + db, User: url.User("postgres")}
	if p.opts.Password != "" {
		u.User = url.UserPassword("postgres", p.opts.Password)
	}
	mode := "disable"
	if p.opts.TLS != nil {
		mode = "require"
	}
	u.RawQuery = "sslmode=" + mode
	return u.String()
}

// Running reports whether the cluster in Dir runs (started by anyone, say
// an earlier make run), and if so points Port and Addr at its port.
func (p *Postgres) Running() bool {
	if !p.Initialized() || p.pgctl("status") != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, "postmaster.pid"))
	if err != nil {
		return false
	}
	// The fourth line of postmaster.pid is the port.
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return false
	}
	p.setPort(port)
	return true
}

// Start starts the stopped cluster on Port and waits until it accepts
// connections. Recovery after an immediate stop is part of the wait.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.pgctl("start", "-l", p.LogFile, "-o", "-p "+strconv.Itoa(p.Port),
		"-w", "-t", strconv.Itoa(int(pgStartTimeout.Seconds())))
	if err != nil {
		return fmt.Errorf("%w\nserver log %s:\n%s", err, p.LogFile, tailFile(p.LogFile, 4000))
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
			return fmt.Errorf("postgres on %s does not accept connections: %w\nserver log %s:\n%s",
				p.Addr, err, p.LogFile, tailFile(p.LogFile, 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the cluster down (fast: sessions are cut, no new ones
// admitted) and waits until it is gone, so Start may follow.
func (p *Postgres) Stop() error { return p.stop("fast") }

// StopImmediate stops the cluster without a shutdown checkpoint, like a
// crash: the next Start recovers. For a cluster about to be deleted.
func (p *Postgres) StopImmediate() error { return p.stop("immediate") }

func (p *Postgres) stop(mode string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pgctl("stop", "-m", mode, "-w", "-t", strconv.Itoa(int(pgStartTimeout.Seconds())))
}
