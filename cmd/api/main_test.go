package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stockgate/stockgate/internal/httpapi"
)

// TestParseConfig: the settings cmd/api starts with, and the ones it
// refuses in one line before it connects to anything. It sets the
// environment, so it does not run in parallel.
func TestParseConfig(t *testing.T) {
	const secret = "a-storefront-secret-0123"
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("# keys\nshop:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("shop:"+secret+"\nshop:"+secret+"x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"API_ADDR", "API_KEYS_FILE", "API_RATE_LIMIT", "API_POLL_INTERVAL", "LOG_LEVEL"} {
		t.Setenv(k, "")
	}

	c, err := parseConfig(nil, io.Discard)
	if err != nil || c.Addr != httpapi.DefaultAddr || len(c.Keys) != 0 {
		t.Errorf("parseConfig() = %+v, %v; want %s without keys", c, err, httpapi.DefaultAddr)
	}

	t.Setenv("API_ADDR", "0.0.0.0:8090")
	_, err = parseConfig(nil, io.Discard)
	if !errors.Is(err, httpapi.ErrPublicWithoutKeys) || strings.Contains(err.Error(), "\n") {
		t.Errorf("API_ADDR=0.0.0.0:8090 without keys: %v, want one line wrapping ErrPublicWithoutKeys", err)
	}
	t.Setenv("API_KEYS_FILE", good)
	if c, err = parseConfig(nil, io.Discard); err != nil || len(c.Keys) != 1 || c.Keys[0].Name != "shop" {
		t.Errorf("with API_KEYS_FILE: %+v, %v; want key shop", c, err)
	}
	if c, err = parseConfig([]string{"--addr", "127.0.0.1:9", "--keys-file", bad}, io.Discard); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("--keys-file with a name twice: %v, want an error that does not show the secret", err)
	}
	for _, args := range [][]string{{"--poll-interval", "0s"}, {"--rate-limit", "-1"}, {"--log-level", "loud"}, {"extra"}, {"--addr", "nohost"}} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("parseConfig(%q) = nil error, want one", args)
		}
	}
	var help strings.Builder
	if _, err := parseConfig([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) || !strings.Contains(help.String(), "API_KEYS_FILE") {
		t.Errorf("-h: %v, usage %q; want flag.ErrHelp and the usage", err, help.String())
	}
}
