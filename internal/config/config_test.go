package config

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

func TestParseInterleaved(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
		wantN    int
	}{
		{[]string{"SKU-1", "--json"}, []string{"SKU-1"}, true, 0},
		{[]string{"--json", "SKU-1", "SKU-2"}, []string{"SKU-1", "SKU-2"}, true, 0},
		{[]string{"-n", "7", "SKU-1"}, []string{"SKU-1"}, false, 7},
		{[]string{"SKU-1", "-n=3"}, []string{"SKU-1"}, false, 3},
		{[]string{"SKU-1", "-5"}, []string{"SKU-1", "-5"}, false, 0},
		{[]string{"--", "--json"}, []string{"--json"}, false, 0},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		asJSON := fs.Bool("json", false, "")
		n := fs.Int("n", 0, "")
		pos, err := Parse(fs, c.args)
		if err != nil || !slices.Equal(pos, c.wantPos) || *asJSON != c.wantJSON || *n != c.wantN {
			t.Errorf("Parse(%q) = %q, json %v, n %d, %v; want %q, %v, %d, nil", c.args, pos, *asJSON, *n, err, c.wantPos, c.wantJSON, c.wantN)
		}
	}
}

func TestParseErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&out)
	fs.Usage = func() { out.WriteString("Usage: t\n") }
	_, err := Parse(fs, []string{"--bogus"})
	if !errors.Is(err, ErrUsage) || strings.Contains(err.Error(), "\n") || out.Len() != 0 {
		t.Errorf("Parse(--bogus) = %v, printed %q; want one ErrUsage line and nothing printed", err, out.String())
	}
	_, err = Parse(fs, []string{"-h"})
	if !errors.Is(err, flag.ErrHelp) || out.String() != "Usage: t\n" {
		t.Errorf("Parse(-h) = %v, printed %q; want ErrHelp and the usage", err, out.String())
	}
}

func TestRegisterHidesPasswordInDefaults(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://user:s3cret@h:6379/2")
	t.Setenv("DATABASE_URL", "postgres://u:s3cret@h/db")
	var out bytes.Buffer
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&out)
	var c Conn
	c.Register(fs)
	fs.PrintDefaults()
	if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "xxxxx") {
		t.Errorf("-h output = %q, want passwords shown as xxxxx", out.String())
	}
	if c.RedisURL != "redis://user:s3cret@h:6379/2" {
		t.Errorf("RedisURL = %q, want the real URL from the environment", c.RedisURL)
	}
	if _, err := Parse(fs, []string{"--redis-url", "rediss://:p@h:1/0"}); err != nil || c.RedisURL != "rediss://:p@h:1/0" {
		t.Errorf("--redis-url: RedisURL = %q, %v; want the flag to win over the environment", c.RedisURL, err)
	}
}

func TestRedisOptionsTLS(t *testing.T) {
	t.Parallel()
	o, err := RedisOptions("rediss://u:p@cache.example:6380/3")
	if err != nil || o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" || o.DB != 3 || o.Username != "u" {
		t.Errorf("RedisOptions(rediss://…) = %+v, %v; want TLS to cache.example, DB 3, user u", o, err)
	}
	if _, err := RedisOptions("http://u:s3cret@h"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("RedisOptions(http://…) error = %v, want an error without the password", err)
	}
}

func TestParseRedisModes(t *testing.T) {
	t.Parallel()
	r, err := ParseRedis("rediss://u:p@n1.example:7000?addr=n2.example:7001&addr=n3.example:7002", true)
	if err != nil || r.Node != nil || r.Cluster == nil {
		t.Fatalf("ParseRedis(cluster URL, cluster) = %+v, %v; want cluster options", r, err)
	}
	if c := r.Cluster; !slices.Equal(c.Addrs, []string{"n1.example:7000", "n2.example:7001", "n3.example:7002"}) ||
		c.Username != "u" || c.Password != "p" || c.TLSConfig == nil || c.TLSConfig.MinVersion == 0 {
		t.Errorf("cluster options = %+v, want three seeds, user u, TLS 1.2+", c)
	}
	if a, ok := r.AsynqOpt().(asynq.RedisClusterClientOpt); !ok || !slices.Equal(a.Addrs, r.Cluster.Addrs) || a.Password != "p" {
		t.Errorf("AsynqOpt() = %#v, want RedisClusterClientOpt with the same seeds and password", r.AsynqOpt())
	}
	if r, err := ParseRedis("redis://h:1/0", true); err != nil || r.Cluster == nil {
		t.Errorf("ParseRedis(one seed /0, cluster) = %+v, %v; want cluster options", r, err)
	}
	if r, err := ParseRedis("redis://h:1/2", false); err != nil || r.Node == nil || r.Node.DB != 2 {
		t.Errorf("ParseRedis(/2, single) = %+v, %v; want DB 2", r, err)
	}
	for _, c := range []struct {
		url     string
		cluster bool
		want    string
	}{
		{"redis://u:s3cret@h:1/2", true, "database 0 only"},
		{"redis://u:s3cret@h:1?addr=h2:2", false, "set --redis-cluster or REDIS_CLUSTER=true"},
		{"redis://u:s3cret@h:1?addr=nope", true, "unable to parse addr"},
		{"http://u:s3cret@h:1", true, "want redis://"},
	} {
		_, err := ParseRedis(c.url, c.cluster)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseRedis(%q, %v) = %v, want one line with %q and no password", c.url, c.cluster, err, c.want)
		}
	}
}

func TestRedisClusterEnv(t *testing.T) {
	for _, c := range []struct {
		env      string
		want, ok bool
	}{{"", false, true}, {"true", true, true}, {"false", false, true}, {"1", true, true}, {"yes", false, false}} {
		t.Setenv("REDIS_CLUSTER", c.env)
		t.Setenv("REDIS_URL", "redis://h:1/0")
		var conn Conn
		conn.Register(flag.NewFlagSet("t", flag.ContinueOnError))
		err := conn.Validate()
		if conn.RedisCluster != c.want || (err == nil) != c.ok {
			t.Errorf("REDIS_CLUSTER=%q: RedisCluster %v, Validate %v; want %v, ok %v", c.env, conn.RedisCluster, err, c.want, c.ok)
		}
	}
}
