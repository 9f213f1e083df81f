package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stockgate/stockgate/internal/admin"
	"github.com/stockgate/stockgate/internal/httpapi"
	"github.com/stockgate/stockgate/internal/testsvc"
	"go.yaml.in/yaml/v3"
)

// These tests read docker-compose.yml as Compose would (interpolating
// ${VAR} from .env.example) and compare it with what the code expects. They
// are named TestCompose* so that make compose-check finds them.

// strings accepts Compose's two spellings of a command: a string or a list.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strings.Fields(n.Value)
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

type healthcheck struct {
	Test        stringList `yaml:"test"`
	Interval    string     `yaml:"interval"`
	Timeout     string     `yaml:"timeout"`
	Retries     int        `yaml:"retries"`
	StartPeriod string     `yaml:"start_period"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     stringList        `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	Profiles    []string          `yaml:"profiles"`
	Healthcheck *healthcheck      `yaml:"healthcheck"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Restart         string `yaml:"restart"`
}

type composeFile struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Secrets  map[string]struct {
		Environment string `yaml:"environment"`
		File        string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type testBundle struct {
	root    string
	raw     composeFile // as written
	compose composeFile // interpolated with envExample
	env     map[string]string
	used    []string // ${VAR} names in docker-compose.yml, sorted
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	root := testsvc.RepoRoot(t)
	b := &testBundle{root: root, env: readEnvFile(t, filepath.Join(root, ".env.example"))}
	src, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// Decode strictly: a misspelt key (depend_on) fails here rather than
	// being ignored by the test and by Compose alike.
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&b.raw); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	seen := map[string]bool{}
	var errs []string
	walkScalars(&doc, func(n *yaml.Node) {
		for _, v := range varNames(n.Value) {
			if !seen[v] {
				seen[v] = true
				b.used = append(b.used, v)
			}
		}
		s, err := interpolate(n.Value, b.env)
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", n.Line, err))
		}
		n.Value = s
	})
	if len(errs) > 0 {
		t.Fatalf("docker-compose.yml does not interpolate with .env.example:\n%s", strings.Join(errs, "\n"))
	}
	if err := doc.Decode(&b.compose); err != nil {
		t.Fatalf("docker-compose.yml after interpolation: %v", err)
	}
	// A secret taken from the environment reads .env too.
	for _, sec := range b.compose.Secrets {
		if sec.Environment != "" && !seen[sec.Environment] {
			seen[sec.Environment] = true
			b.used = append(b.used, sec.Environment)
		}
	}
	slices.Sort(b.used)
	return b
}

func (b *testBundle) service(t *testing.T, name string) service {
	t.Helper()
	s, ok := b.compose.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, name := range []string{"redis", "postgres", "worker", "api", "jaeger", "prometheus"} {
		if _, ok := b.compose.Services[name]; !ok {
			t.Errorf("docker-compose.yml lacks service %q", name)
		}
	}
	for name, s := range b.compose.Services {
		if s.Build != nil {
			continue
		}
		// A floating tag changes under the operator's feet.
		_, tag, ok := strings.Cut(s.Image, ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("service %s image %q, want a pinned tag", name, s.Image)
		}
	}
	for _, name := range []string{"worker", "api"} {
		if s := b.service(t, name); s.Build == nil || s.Image != b.service(t, "worker").Image {
			t.Errorf("%s has build %v, image %q; want it built from the Dockerfile as the worker's image", name, s.Build, s.Image)
		}
	}
}

func TestComposeRedisDurability(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.service(t, "redis").Command
	for _, want := range [][2]string{{"--appendonly", "yes"}, {"--maxmemory-policy", "noeviction"}} {
		i := slices.Index(cmd, want[0])
		if i < 0 || i+1 >= len(cmd) || cmd[i+1] != want[1] {
			t.Errorf("redis command %q lacks %s %s", cmd, want[0], want[1])
		}
	}
}

// codeEnv lists the environment variables a command's code reads: every
// all-caps string literal passed first to a call (os.Getenv, config.Env,
// config.EnvInt and the command's wrappers around them) in cmd/NAME and
// internal/config.
func codeEnv(t *testing.T, root, command string) map[string]bool {
	t.Helper()
	envName := regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"cmd/" + command, "internal/config"} {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s (%v): the worker's configuration cannot be checked", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envName.MatchString(s) {
						out[s] = true
					}
				}
				return true
			})
		}
	}
	return out
}

// otelEnv are the standard variables telemetry.Setup honours (through the
// SDK and autoexport). OTEL_PROPAGATORS and OTEL_METRICS_EXPORTER are absent
// on purpose: the propagator is fixed to W3C and metrics are pulled at
// /metrics, so setting them would do nothing.
var otelEnv = map[string]bool{
	"OTEL_SDK_DISABLED": true, "OTEL_SERVICE_NAME": true, "OTEL_RESOURCE_ATTRIBUTES": true,
	"OTEL_TRACES_EXPORTER": true, "OTEL_TRACES_SAMPLER": true, "OTEL_TRACES_SAMPLER_ARG": true,
	"OTEL_EXPORTER_OTLP_ENDPOINT": true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": true,
	"OTEL_EXPORTER_OTLP_PROTOCOL": true, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": true,
	"OTEL_EXPORTER_OTLP_HEADERS": true, "OTEL_EXPORTER_OTLP_TRACES_HEADERS": true,
	"OTEL_EXPORTER_OTLP_TIMEOUT": true, "OTEL_EXPORTER_OTLP_INSECURE": true,
	"OTEL_EXPORTER_OTLP_CERTIFICATE": true, "OTEL_EXPORTER_OTLP_COMPRESSION": true,
	"OTEL_BSP_SCHEDULE_DELAY": true, "OTEL_BSP_EXPORT_TIMEOUT": true,
	"OTEL_BSP_MAX_QUEUE_SIZE": true, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": true,
}

func TestComposeWorkerEnv(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.service(t, "worker")
	read := codeEnv(t, b.root, "worker")

	for _, k := range []string{"REDIS_URL", "DATABASE_URL", "ADMIN_USER", "ADMIN_PASSWORD"} {
		if !read[k] {
			t.Errorf("cmd/worker no longer reads %s; update docker-compose.yml and this test", k)
		}
		if w.Environment[k] == "" {
			t.Errorf("worker environment lacks %s", k)
		}
	}
	for k := range w.Environment {
		switch {
		case strings.HasPrefix(k, "OTEL_"):
			if !otelEnv[k] {
				t.Errorf("worker environment sets %s, which telemetry.Setup does not honour", k)
			}
		case !read[k]:
			t.Errorf("worker environment sets %s, which cmd/worker never reads (typo?)", k)
		}
	}

	// Traces go to the jaeger service over OTLP/HTTP.
	if got := w.Environment["OTEL_TRACES_EXPORTER"]; got != "otlp" {
		t.Errorf("worker OTEL_TRACES_EXPORTER = %q, want otlp", got)
	}
	if got := w.Environment["OTEL_EXPORTER_OTLP_PROTOCOL"]; got != "" && got != "http/protobuf" {
		t.Errorf("worker OTEL_EXPORTER_OTLP_PROTOCOL = %q, want http/protobuf (port 4318)", got)
	}
	if u, err := url.Parse(w.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]); err != nil || u.Host != "jaeger:4318" || u.Scheme != "http" {
		t.Errorf("worker OTEL_EXPORTER_OTLP_ENDPOINT = %q, want http://jaeger:4318", w.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
	}
	if got := b.service(t, "jaeger").Environment["COLLECTOR_OTLP_ENABLED"]; got != "true" {
		t.Errorf("jaeger COLLECTOR_OTLP_ENABLED = %q, want true", got)
	}

	// REDIS_URL names the redis service, with a DB number.
	ru, err := url.Parse(w.Environment["REDIS_URL"])
	if err != nil || ru.Scheme != "redis" || ru.Hostname() != "redis" || cmpPort(ru.Port(), "6379") != "6379" || !regexp.MustCompile(`^/\d+$`).MatchString(ru.Path) {
		t.Errorf("worker REDIS_URL = %q, want redis://redis:6379/<db>", w.Environment["REDIS_URL"])
	}

	// DATABASE_URL names the postgres service and its own credentials.
	pg := b.service(t, "postgres").Environment
	du, err := url.Parse(w.Environment["DATABASE_URL"])
	if err != nil {
		t.Fatalf("worker DATABASE_URL does not parse: %v", err)
	}
	pass, _ := du.User.Password()
	got := []string{du.Scheme, du.Hostname(), cmpPort(du.Port(), "5432"), du.User.Username(), pass, strings.TrimPrefix(du.Path, "/")}
	want := []string{"postgres", "postgres", "5432", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("worker DATABASE_URL against the postgres service (-want +got):\n%s", diff)
	}

	// The drain must finish before Docker's SIGKILL.
	drain, err := time.ParseDuration(w.Environment["SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("worker SHUTDOWN_TIMEOUT = %q, want it set explicitly: %v", w.Environment["SHUTDOWN_TIMEOUT"], err)
	}
	grace, err := time.ParseDuration(w.StopGracePeriod)
	if err != nil || grace <= drain {
		t.Errorf("worker stop_grace_period = %q, want more than SHUTDOWN_TIMEOUT %v", w.StopGracePeriod, drain)
	}
}

func cmpPort(p, def string) string {
	if p == "" {
		return def
	}
	return p
}

// adminAddr is the worker's --admin-addr, from its command or ADMIN_ADDR.
func adminAddr(w service) string {
	for i, a := range w.Command {
		if v, ok := strings.CutPrefix(a, "--admin-addr="); ok {
			return v
		}
		if (a == "--admin-addr" || a == "-admin-addr") && i+1 < len(w.Command) {
			return w.Command[i+1]
		}
	}
	return w.Environment["ADMIN_ADDR"]
}

type promConfig struct {
	ScrapeConfigs []struct {
		JobName     string `yaml:"job_name"`
		MetricsPath string `yaml:"metrics_path"`
		BasicAuth   *struct {
			Username     string `yaml:"username"`
			UsernameFile string `yaml:"username_file"`
			Password     string `yaml:"password"`
			PasswordFile string `yaml:"password_file"`
		} `yaml:"basic_auth"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestComposeAdminPort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.service(t, "worker")

	addr := adminAddr(w)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker admin address %q: %v", addr, err)
	}
	if host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("worker admin address %q, want all interfaces so the host and Prometheus reach it", addr)
	}
	// The worker itself refuses this address without auth; with the
	// compose credentials it must accept it.
	cfg := admin.Config{Addr: addr, User: w.Environment["ADMIN_USER"], Password: w.Environment["ADMIN_PASSWORD"]}
	if err := cfg.Validate(); err != nil {
		t.Errorf("admin.Config{Addr: %q, compose credentials}.Validate() = %v, want nil", addr, err)
	}
	// And compose must refuse to start without them rather than start a
	// worker that exits.
	for _, k := range []string{"ADMIN_USER", "ADMIN_PASSWORD"} {
		if raw := b.raw.Services["worker"].Environment[k]; !strings.HasPrefix(raw, "${"+k+":?") {
			t.Errorf("worker %s = %q, want ${%s:?message} so compose stops when it is unset", k, raw, k)
		}
	}

	published := false
	for _, p := range w.Ports {
		if strings.HasSuffix(p, ":"+port) || strings.HasSuffix(p, ":"+port+"/tcp") {
			published = true
		}
	}
	if !published {
		t.Errorf("worker ports %q do not publish the admin port %s", w.Ports, port)
	}

	if w.Healthcheck == nil {
		t.Fatal("worker has no healthcheck")
	}
	hc := strings.Join(w.Healthcheck.Test, " ")
	if !strings.Contains(hc, "127.0.0.1:"+port+"/readyz") {
		t.Errorf("worker healthcheck %q, want a probe of 127.0.0.1:%s/readyz", hc, port)
	}
	if !strings.Contains(hc, "ADMIN_USER") || !strings.Contains(hc, "ADMIN_PASSWORD") {
		t.Errorf("worker healthcheck %q sends no credentials, but /readyz needs basic auth", hc)
	}

	// Prometheus scrapes the same port with the same credentials.
	p := b.service(t, "prometheus")
	confPath := ""
	for _, a := range p.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			confPath = v
		}
	}
	mounted := ""
	for _, v := range p.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == confPath {
			mounted = parts[0]
		}
	}
	if confPath == "" || filepath.Clean(mounted) != filepath.Clean("./deploy/prometheus.yml") {
		t.Fatalf("prometheus --config.file %q is mounted from %q, want ./deploy/prometheus.yml", confPath, mounted)
	}
	src, err := os.ReadFile(filepath.Join(b.root, "deploy", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var pc promConfig
	if err := yaml.Unmarshal(src, &pc); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	found := false
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if !slices.Contains(st.Targets, "worker:"+port) {
				continue
			}
			found = true
			if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
				t.Errorf("prometheus job %s metrics_path = %q, want /metrics", sc.JobName, sc.MetricsPath)
			}
			if sc.BasicAuth == nil {
				t.Fatalf("prometheus job %s has no basic_auth, but the worker's /metrics needs it", sc.JobName)
			}
			for file, envVar := range map[string]string{sc.BasicAuth.UsernameFile: "ADMIN_USER", sc.BasicAuth.PasswordFile: "ADMIN_PASSWORD"} {
				name, ok := strings.CutPrefix(file, "/run/secrets/")
				if !ok || !slices.Contains(p.Secrets, name) || b.compose.Secrets[name].Environment != envVar {
					t.Errorf("prometheus basic_auth file %q: want /run/secrets/<s> with s granted to prometheus and taken from %s (secrets %v)", file, envVar, p.Secrets)
				}
			}
		}
	}
	if !found {
		t.Errorf("deploy/prometheus.yml scrapes no worker:%s target", port)
	}
}

// TestComposeAPI: the storefront API service agrees with cmd/api: the
// variables it reads, the worker's Redis and Postgres, an address beyond
// loopback with keys (which the API demands there), keys from a secret
// that parses, its port published and probed, a drain shorter than the grace.
func TestComposeAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, w := b.service(t, "api"), b.service(t, "worker")
	read := codeEnv(t, b.root, "api")
	for k := range a.Environment {
		switch {
		case strings.HasPrefix(k, "OTEL_"):
			if !otelEnv[k] {
				t.Errorf("api environment sets %s, which telemetry.Setup does not honour", k)
			}
		case !read[k]:
			t.Errorf("api environment sets %s, which cmd/api never reads (typo?)", k)
		}
	}
	for _, k := range []string{"REDIS_URL", "DATABASE_URL"} {
		if a.Environment[k] == "" || a.Environment[k] != w.Environment[k] {
			t.Errorf("api %s = %q, want the worker's %q", k, a.Environment[k], w.Environment[k])
		}
	}

	if len(a.Command) < 3 || a.Command[0] != "api" || a.Command[1] != "--addr" {
		t.Fatalf("api command %q, want api --addr HOST:PORT", a.Command)
	}
	host, port, err := net.SplitHostPort(a.Command[2])
	if err != nil || (host != "0.0.0.0" && host != "") {
		t.Errorf("api --addr %q, want all interfaces so the host reaches it", a.Command[2])
	}
	published := false
	for _, p := range a.Ports {
		published = published || strings.HasSuffix(p, ":"+port)
	}
	if !published {
		t.Errorf("api ports %q do not publish --addr's port %s", a.Ports, port)
	}
	if a.Healthcheck == nil || !strings.Contains(strings.Join(a.Healthcheck.Test, " "), "127.0.0.1:"+port+"/readyz") {
		t.Errorf("api healthcheck %v, want a probe of 127.0.0.1:%s/readyz", a.Healthcheck, port)
	}

	// The keys file is a secret granted to the api, from a variable of
	// .env.example that parses as keys: the API refuses a public address
	// without them.
	name, ok := strings.CutPrefix(a.Environment["API_KEYS_FILE"], "/run/secrets/")
	if !ok || !slices.Contains(a.Secrets, name) {
		t.Fatalf("api API_KEYS_FILE = %q, want /run/secrets/<s> with s granted to api (secrets %v)", a.Environment["API_KEYS_FILE"], a.Secrets)
	}
	keysVar := b.compose.Secrets[name].Environment
	keys, err := httpapi.ParseKeys(strings.NewReader(b.env[keysVar]))
	if keysVar == "" || err != nil || len(keys) == 0 {
		t.Errorf("secret %s comes from %q = %q: %v; want keys that parse", name, keysVar, b.env[keysVar], err)
	} else if !strings.Contains(b.env[keysVar], "change-me") {
		t.Errorf(".env.example %s = %q, want an obvious placeholder (change-me...)", keysVar, b.env[keysVar])
	}

	drain, err := time.ParseDuration(a.Environment["SHUTDOWN_TIMEOUT"])
	grace, gerr := time.ParseDuration(a.StopGracePeriod)
	if err != nil || gerr != nil || grace <= drain {
		t.Errorf("api SHUTDOWN_TIMEOUT %q, stop_grace_period %q; want both, the grace longer", a.Environment["SHUTDOWN_TIMEOUT"], a.StopGracePeriod)
	}
	for _, dep := range []string{"redis", "postgres", "worker"} {
		if got := a.DependsOn[dep].Condition; got != "service_healthy" {
			t.Errorf("api depends_on %s condition = %q, want service_healthy (the worker migrates)", dep, got)
		}
	}
}

func TestComposeDependsOn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.service(t, "worker")
	for _, dep := range []string{"redis", "postgres"} {
		if got := w.DependsOn[dep].Condition; got != "service_healthy" {
			t.Errorf("worker depends_on %s condition = %q, want service_healthy", dep, got)
		}
	}
	if got := b.service(t, "prometheus").DependsOn["worker"].Condition; got == "" {
		t.Error("prometheus does not depend on worker")
	}
	for name, s := range b.compose.Services {
		for dep, d := range s.DependsOn {
			target, ok := b.compose.Services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			}
			if d.Condition == "service_healthy" && target.Healthcheck == nil {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
			if len(target.Profiles) > 0 && len(s.Profiles) == 0 {
				t.Errorf("%s depends on %s, which only runs under profiles %v", name, dep, target.Profiles)
			}
		}
	}
}

func TestComposeEnvExample(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var documented []string
	for k := range b.env {
		documented = append(documented, k)
	}
	slices.Sort(documented)
	if diff := cmp.Diff(b.used, documented); diff != "" {
		t.Errorf("the ${VAR}s of docker-compose.yml (-) against the variables of .env.example (+):\n%s", diff)
	}
	for _, k := range []string{"POSTGRES_PASSWORD", "ADMIN_PASSWORD"} {
		if !strings.Contains(b.env[k], "change-me") {
			t.Errorf(".env.example %s = %q, want an obvious placeholder (change-me...)", k, b.env[k])
		}
	}
}

func TestComposePortsLoopback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, s := range b.compose.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q, want it bound to 127.0.0.1", name, p)
			}
		}
	}
}

func TestComposeAsynqmon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, ok := b.compose.Services["asynqmon"]
	if !ok {
		t.Skip("no standalone asynqmon service (it is optional)")
	}
	if !slices.Contains(s.Command, "--read-only") {
		t.Errorf("asynqmon command %q, want --read-only: it has no auth", s.Command)
	}
	ru, err := url.Parse(b.service(t, "worker").Environment["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--redis-addr=" + ru.Hostname() + ":" + cmpPort(ru.Port(), "6379"), "--redis-db=" + strings.TrimPrefix(ru.Path, "/")}
	for _, w := range want {
		if !slices.Contains(s.Command, w) {
			t.Errorf("asynqmon command %q lacks %s (the worker's REDIS_URL)", s.Command, w)
		}
	}
}

func TestComposeDockerfile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	src, err := os.ReadFile(filepath.Join(b.root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	text := strings.ReplaceAll(string(src), "\\\n", " ")
	var from []string
	var user, build, cmdLine string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			from = append(from, strings.Fields(rest)[0])
			user = "" // USER applies per stage
		case "USER":
			user = strings.TrimSpace(rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		case "CMD", "ENTRYPOINT":
			cmdLine = rest
		}
	}
	if len(from) < 2 || !strings.HasPrefix(from[0], "golang:1.26") || strings.HasPrefix(from[len(from)-1], "golang") {
		t.Errorf("Dockerfile stages %q, want a golang:1.26 builder and a small runtime stage", from)
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("Dockerfile final USER = %q, want a non-root user", user)
	}
	for _, c := range []string{"worker", "api", "enqueue", "stockctl"} {
		if !strings.Contains(build, "./cmd/"+c) {
			t.Errorf("Dockerfile go build %q does not build ./cmd/%s", build, c)
		}
		if _, err := os.Stat(filepath.Join(b.root, "cmd", c)); err != nil {
			t.Errorf("Dockerfile builds ./cmd/%s: %v", c, err)
		}
	}
	if !strings.Contains(cmdLine, `"worker"`) {
		t.Errorf("Dockerfile CMD %q, want worker", cmdLine)
	}
	if got := b.service(t, "worker").Command; len(got) == 0 || got[0] != "worker" {
		t.Errorf("worker service command %q, want it to run the worker binary", got)
	}
	ignore, err := os.ReadFile(filepath.Join(b.root, ".dockerignore"))
	if err != nil || !regexp.MustCompile(`(?m)^\.env$`).Match(ignore) {
		t.Errorf(".dockerignore (%v) does not exclude .env, so the image could carry the passwords", err)
	}
}

// readEnvFile parses KEY=VALUE lines, as Compose reads .env.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(k) {
			t.Fatalf("%s:%d: %q is not KEY=VALUE", path, n, line)
		}
		if _, dup := env[k]; dup {
			t.Fatalf("%s:%d: %s set twice", path, n, k)
		}
		env[k] = v
	}
	return env
}

func walkScalars(n *yaml.Node, f func(*yaml.Node)) {
	if n.Kind == yaml.ScalarNode {
		f(n)
	}
	for _, c := range n.Content {
		walkScalars(c, f)
	}
}

// varRef matches what Compose interpolates: $$ (a literal $), ${VAR},
// ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and $VAR.
var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func varNames(s string) []string {
	var out []string
	for _, m := range varRef.FindAllStringSubmatch(s, -1) {
		if m[1] != "" {
			out = append(out, m[1])
		} else if m[4] != "" {
			out = append(out, m[4])
		}
	}
	return out
}

func interpolate(s string, env map[string]string) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		if ref == "$$" {
			return "$"
		}
		name, op, arg := m[1], m[2], m[3]
		if name == "" {
			name = m[4]
		}
		v, set := env[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?":
			if v == "" {
				err = fmt.Errorf("%s: %s", name, arg)
			}
		case "?":
			if !set {
				err = fmt.Errorf("%s: %s", name, arg)
			}
		}
		return v
	})
	return out, err
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "a", "EMPTY": ""}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "x${A}y$A", want: "xaya"},
		{in: "${B:-def} ${EMPTY:-def} ${EMPTY-def} ${B-def}", want: "def def  def"},
		{in: "$${A} $$A", want: "${A} $A"},
		{in: "${B:?set B}", wantErr: true},
		{in: "${EMPTY:?set it}", wantErr: true},
		{in: "${EMPTY?set it}", want: ""},
	}
	for _, tt := range tests {
		got, err := interpolate(tt.in, env)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("interpolate(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if got, want := varNames("${A:-x} $$B $C"), []string{"A", "C"}; !slices.Equal(got, want) {
		t.Errorf("varNames = %q, want %q", got, want)
	}
}
