package httpapi

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Key is one API key, known by its name and the SHA-256 of its secret: the
// secret itself is never kept, logged or compared as it is.
type Key struct {
	Name   string
	Digest [sha256.Size]byte
}

// minSecret bounds a key's secret from below: a short one can be guessed.
const minSecret = 16

var keyName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// LoadKeys reads an API_KEYS_FILE: one key per line as "name:secret" or
// "name:sha256:HEX" (the secret's SHA-256, so the file need not hold the
// secret), with blank lines and lines starting with # ignored. An error
// names the line, never its secret.
func LoadKeys(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	defer f.Close()
	keys, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	return keys, nil
}

// ParseKeys reads keys in LoadKeys's format.
func ParseKeys(r io.Reader) ([]Key, error) {
	var keys []Key
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want name:key or name:sha256:HEX", n)
		case !keyName.MatchString(name):
			return nil, fmt.Errorf("line %d: key name must be 1-64 characters of A-Z a-z 0-9 _ . -", n)
		case seen[name]:
			return nil, fmt.Errorf("line %d: key name %s appears twice", n, name)
		}
		seen[name] = true
		k := Key{Name: name}
		if h, ok := strings.CutPrefix(secret, "sha256:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("line %d: key %s: sha256: wants 64 hex digits", n, name)
			}
			copy(k.Digest[:], b)
		} else {
			if len(secret) < minSecret {
				return nil, fmt.Errorf("line %d: key %s is shorter than %d characters", n, name, minSecret)
			}
			k.Digest = sha256.Sum256([]byte(secret))
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

var errNoKey = errors.New("no key")

// match returns the name of the key whose secret is presented. Every key
// is compared, in constant time, whatever matches: the time taken says
// nothing about which key, or how much of one, was right.
func match(keys []Key, presented string) (string, error) {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range keys {
		if subtle.ConstantTimeCompare(d[:], keys[i].Digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", errNoKey
	}
	return keys[found].Name, nil
}
