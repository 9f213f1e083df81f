package admin

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		cfg        Config
		wantErr    string // substring; "" means valid
		wantPublic bool   // errors.Is(err, ErrPublicWithoutAuth)
	}{
		{name: "default address", cfg: Config{}},
		{name: "loopback v4", cfg: Config{Addr: "127.0.0.1:0"}},
		{name: "loopback v4 elsewhere in 127/8", cfg: Config{Addr: "127.1.2.3:8080"}},
		{name: "loopback v6", cfg: Config{Addr: "[::1]:8080"}},
		{name: "localhost", cfg: Config{Addr: "localhost:8080"}},
		{name: "all interfaces with auth", cfg: Config{Addr: "0.0.0.0:8080", User: "ops", Password: "pw"}},
		{name: "all interfaces without auth", cfg: Config{Addr: "0.0.0.0:8080"}, wantErr: `admin address "0.0.0.0:8080": refusing`, wantPublic: true},
		{name: "empty host without auth", cfg: Config{Addr: ":8080"}, wantErr: "refusing", wantPublic: true},
		{name: "v6 any without auth", cfg: Config{Addr: "[::]:8080"}, wantErr: "refusing", wantPublic: true},
		{name: "LAN address without auth", cfg: Config{Addr: "10.0.0.5:8080"}, wantErr: "refusing", wantPublic: true},
		{name: "hostname without auth", cfg: Config{Addr: "worker:8080"}, wantErr: "refusing", wantPublic: true},
		{name: "user without password", cfg: Config{User: "ops"}, wantErr: "set both ADMIN_USER and ADMIN_PASSWORD"},
		{name: "password without user", cfg: Config{Addr: "0.0.0.0:8080", Password: "pw"}, wantErr: "set both ADMIN_USER and ADMIN_PASSWORD"},
		{name: "no port", cfg: Config{Addr: "127.0.0.1"}, wantErr: "want host:port"},
		{name: "no port, newline quoted", cfg: Config{Addr: "a\nb"}, wantErr: `admin address "a\nb": want host:port such as 127.0.0.1:8080: missing port in address`},
		{name: "newline in host quoted", cfg: Config{Addr: "a\nb:8080"}, wantErr: `admin address "a\nb:8080": refusing`, wantPublic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate(%+v) = %v, want an error containing %q", tt.cfg, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate(%+v) = %q, want one line", tt.cfg, err)
			}
			if got := errors.Is(err, ErrPublicWithoutAuth); got != tt.wantPublic {
				t.Errorf("errors.Is(Validate(%+v), ErrPublicWithoutAuth) = %v, want %v", tt.cfg, got, tt.wantPublic)
			}
		})
	}
}
