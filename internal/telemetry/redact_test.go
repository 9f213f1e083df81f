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
		{"kv dsn key after a closing quote", "password='a b'sslpassword=k3y host=db", "password=xxxxxsslpassword=xxxxx host=db", "k3y"},
		{"kv dsn escaped space", "host=db password=s3cr\\ et dbname=sg", "host=db password=xxxxx dbname=sg", "et"},
		{"kv dsn trailing backslash", "host=db password='s3cret\\", "host=db password=xxxxx", "\\"},
		{"kv dsn empty value takes the next word", "host=db password= user=app", "host=db password= xxxxx", "user"},
		{"kv dsn vertical tab", "password\v=s3cret", "password\v=xxxxx", "s3cret"},
		{"kv dsn with a URL in a value", "a://x=1 password=s3cret", "a://x=1 password=xxxxx", "s3cret"},
		{"semicolon-separated keys", "Host=db;Password=s3cret;Database=sg", "Host=db;Password=xxxxx", "s3cret"},
		{"key that only ends in password", "host=db nopassword=visible", "host=db nopassword=visible", ""},
		{"query password keeps the other parameters", "postgres://db/sg?sslmode=require&password=s3cret&connect_timeout=5", "postgres://db/sg?sslmode=require&password=xxxxx&connect_timeout=5", "s3cret"},
		{"query password key in upper case", "postgres://db/sg?PASSWORD=s3cret", "postgres://db/sg?PASSWORD=xxxxx", "s3cret"},
		{"query password key percent-encoded", "postgres://db/sg?pass%77ord=s3cret&x=1", "postgres://db/sg?pass%77ord=xxxxx&x=1", "s3cret"},
		{"query password holding a hash", "postgres://db/sg?password=s3c#ret", "postgres://db/sg?password=xxxxx", "ret"},
		{"query password without //", "unix:/tmp/redis.sock?password=s3cret", "unix:/tmp/redis.sock?password=xxxxx", "s3cret"},
		{"user info without a scheme", "//u:s3cret@h:6379/0", "//u:xxxxx@h:6379/0", "s3cret"},
		{"hybrid: DSN key before the scheme", "pAssword=://: 0@", "pAssword=xxxxx@", " 0"},
		{"hybrid: DSN value hides the URL colon", ":// pAssword=0: 00000@", ":// pAssword=xxxxx@", "00000"},
		{"hybrid: query password after the user-info colon", "A://:?password=@0", "A://:xxxxx", "@0"},
		{"hybrid: user info holding a DSN password", "redis://u:pw password=s3 cret@h", "redis://u:xxxxx@h", "cret"},
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
