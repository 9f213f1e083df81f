package devsvc

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// composeReady bounds the wait for a compose service to answer once
// `docker compose up --wait` has returned.
const composeReady = 60 * time.Second

// docker runs the docker client in the checkout and returns its stdout;
// its stderr goes to the log.
func (s *Services) docker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.Docker, args...)
	cmd.Dir = s.Root
	var out bytes.Buffer
	cmd.Stdout = &out
	if s.Log != nil {
		cmd.Stderr = s.Log
	}
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// composeUsable reports whether the checkout has a compose file and a
// Docker engine answers (not just a client), with the compose plugin.
func (s *Services) composeUsable(ctx context.Context) bool {
	if !exists(filepath.Join(s.Root, "docker-compose.yml")) && !exists(filepath.Join(s.Root, "compose.yaml")) {
		return false
	}
	if _, err := exec.LookPath(s.Docker); err != nil {
		return false
	}
	quiet := *s
	quiet.Log = nil
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := quiet.docker(ctx, "info"); err != nil {
		return false
	}
	_, err := quiet.docker(ctx, "compose", "version")
	return err == nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// composeUp starts one compose service, waiting until it is healthy, and
// records it for Down.
func (s *Services) composeUp(ctx context.Context, svc string) error {
	if err := Dotenv(s.Root, s.Log); err != nil {
		return err
	}
	s.logf("compose: docker compose up -d --wait %s", svc)
	out, err := s.docker(ctx, "compose", "up", "-d", "--wait", svc)
	if s.Log != nil && len(out) > 0 {
		s.Log.Write(out)
	}
	if err != nil {
		return err
	}
	started := s.composeStarted()
	if slices.Contains(started, svc) {
		return nil
	}
	return os.WriteFile(s.data("compose.started"), []byte(strings.Join(append(started, svc), "\n")+"\n"), 0o644)
}

// composeStarted lists the compose services Up started.
func (s *Services) composeStarted() []string {
	b, err := os.ReadFile(s.data("compose.started"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// composePort is the host port a compose service publishes for port.
func (s *Services) composePort(ctx context.Context, svc string, port int) (int, error) {
	out, err := s.docker(ctx, "compose", "port", svc, strconv.Itoa(port))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	host, err := strconv.Atoi(line[strings.LastIndexByte(line, ':')+1:])
	if err != nil || host == 0 {
		return 0, fmt.Errorf("compose service %s publishes no host port for %d; publish it or set the URL yourself", svc, port)
	}
	return host, nil
}

// composeEnv is an environment variable of a running compose service,
// read from its container's config so the image needs no shell.
func (s *Services) composeEnv(ctx context.Context, svc, name string) (string, error) {
	out, err := s.docker(ctx, "compose", "ps", "-q", svc)
	if err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if id == "" {
		return "", fmt.Errorf("compose service %s has no container", svc)
	}
	out, err = s.docker(ctx, "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", id)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), name+"="); ok {
			return v, nil
		}
	}
	return "", nil
}

// waitAnswers polls answers until it says yes or composeReady passes.
func waitAnswers(ctx context.Context, answers func(context.Context, string) bool, rawURL string) bool {
	deadline := time.Now().Add(composeReady)
	for !answers(ctx, rawURL) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Second)
	}
	return true
}

func (s *Services) composeRedis(ctx context.Context) (string, error) {
	if err := s.composeUp(ctx, "redis"); err != nil {
		return "", err
	}
	port, err := s.composePort(ctx, "redis", 6379)
	if err != nil {
		return "", err
	}
	u := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	if !waitAnswers(ctx, RedisAnswers, u) {
		return "", fmt.Errorf("compose redis at %s did not answer within %v", u, composeReady)
	}
	return u, nil
}

func (s *Services) composePostgres(ctx context.Context) (string, error) {
	if err := s.composeUp(ctx, "postgres"); err != nil {
		return "", err
	}
	user, err := s.composeEnv(ctx, "postgres", "POSTGRES_USER")
	if err != nil {
		return "", err
	}
	password, err := s.composeEnv(ctx, "postgres", "POSTGRES_PASSWORD")
	if err != nil {
		return "", err
	}
	port, err := s.composePort(ctx, "postgres", 5432)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "postgres", User: url.User(cmp.Or(user, "postgres")), Host: fmt.Sprintf("127.0.0.1:%d", port),
		Path: "/postgres", RawQuery: "sslmode=disable"}
	if password != "" {
		u.User = url.UserPassword(u.User.Username(), password)
	}
	if !waitAnswers(ctx, PostgresAnswers, u.String()) {
		return "", fmt.Errorf("compose postgres on 127.0.0.1:%d did not answer within %v", port, composeReady)
	}
	s.logf("postgres: database %s in compose", s.Database)
	return EnsureDatabase(ctx, u.String(), s.Database)
}

// composeDown stops the compose services Up started, and only those.
func (s *Services) composeDown(ctx context.Context) error {
	svcs := s.composeStarted()
	if len(svcs) == 0 {
		return nil
	}
	s.logf("compose: docker compose stop %s", strings.Join(svcs, " "))
	if _, err := s.docker(ctx, append([]string{"compose", "stop"}, svcs...)...); err != nil {
		return err
	}
	return os.Remove(s.data("compose.started"))
}

var passwordSetting = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*PASSWORD)=`)

// Dotenv creates root/.env from root/.env.example when .env is missing,
// with a fresh random value for every *PASSWORD setting: docker-compose.yml
// refuses to start without them, and a password copied from a public
// example file is no password. An existing .env is never touched.
func Dotenv(root string, log io.Writer) error {
	dst := filepath.Join(root, ".env")
	if exists(dst) {
		return nil
	}
	example, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if log != nil {
		fmt.Fprintln(log, "==> creating .env from .env.example, with random passwords")
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(example))
	for sc.Scan() {
		line := sc.Text()
		if m := passwordSetting.FindStringSubmatch(line); m != nil {
			line = m[1] + "=" + rand.Text() // base32: URL-safe, as .env.example asks
		}
		b.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
