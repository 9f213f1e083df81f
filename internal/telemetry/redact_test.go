package telemetry

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		in     string
		want   string
		secret string // must not survive, even in part
	}{
		{"redis password only", "redis://:s3cret@h:6379/0", "redis://:xxxxx@h:6379/0", "s3cret"},
		{"redis user and password", "redis://app:s3cret@h:6379/2", "redis://app:xxxxx@h:6379/2", "s3cret"},
		{"rediss", "rediss://default:s3cret@cache.example.com:6380/0?dial_timeout=3s", "rediss://default:xxxxx@cache.example.com:6380/0?dial_timeout=3s", "s3cret"},
		{"redis without password", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", ""},
		{"redis user without password", "redis://app@h:6379/0", "redis://app@h:6379/0", ""},
		{"postgres", "postgres://app:s3cret@db:5432/stockgate?sslmode=disable", "postgres://app:xxxxx@db:5432/stockgate?sslmode=disable", "s3cret"},
		{"postgresql scheme", "postgresql://app:s3cret@db/stockgate", "postgresql://app:xxxxx@db/stockgate", "s3cret"},
		{"postgres password param", "postgres://app@db/stockgate?password=s3cret&sslmode=require", "postgres://app@db/stockgate?password=xxxxx&sslmode=require", "s3cret"},
		{"postgres sslpassword param", "postgres://app@db/sg?sslmode=verify-full&sslpassword=k3y", "postgres://app@db/sg?sslmode=verify-full&sslpassword=xxxxx", "k3y"},
		{"percent-encoded password", "postgres://app:p%40ss%2Fw0rd@db/sg", "postgres://app:xxxxx@db/sg", "p%40ss"},
		{"unparseable: bad escape", "redis://:s3cr%zzet@h:6379/0", "redis://:xxxxx@h:6379/0", "s3cr"},
		{"unparseable: raw slash in password", "redis://u:1/s3cret@h:6379/0", "redis://u:xxxxx@h:6379/0", "s3cret"},
		{"unparseable: raw at and question mark", "postgres://app:a@b?c#d@db/sg", "postgres://app:xxxxx@db/sg", "a@b?c#d"},
		{"unparseable: space in host", "redis://:s3cret@bad host:6379/0", "redis://:xxxxx@bad host:6379/0", "s3cret"},
		{"kv dsn", "host=db user=app password=s3cret dbname=sg", "host=db user=app password=xxxxx dbname=sg", "s3cret"},
		{"kv dsn quoted", "host=db password='s3 cr\\'et' dbname=sg", "host=db password=xxxxx dbname=sg", "cr\\'et"},
		{"kv dsn unterminated quote", "host=db password='s3cret dbname=sg", "host=db password=xxxxx", "s3cret"},
		{"kv dsn spaces around =", "host=db password = s3cret user=app", "host=db password = xxxxx user=app", "s3cret"},
		{"kv dsn sslpassword upper case", "host=db SSLPASSWORD=k3y", "host=db SSLPASSWORD=xxxxx", "k3y"},
		{"at sign in query hides too much, never too little", "postgres://app:s3cret@db/sg?application_name=a@b", "postgres://app:xxxxx@b", "s3cret"},
		{"at sign in query without password", "postgres://db/sg?application_name=a@b", "postgres://db/sg?application_name=a@b", ""},
		{"plain address", "127.0.0.1:6379", "127.0.0.1:6379", ""},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.secret != "" && strings.Contains(got, tt.secret) {
				t.Errorf("RedactURL(%q) = %q, still contains the secret %q", tt.in, got, tt.secret)
			}
		})
	}
}
