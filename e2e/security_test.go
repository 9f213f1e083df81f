package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// aclLine is the Redis ACL user the README documents for stockgate: its
// keys and Asynq's, Asynq's pub/sub, and no admin or dangerous command but
// the read-only INFO and CONFIG GET the worker's checks use.
const aclLine = "stockgate on >%s ~sg:* ~asynq:* &* +@all -@admin -@dangerous +info +config|get"

// testCA writes a CA and a server certificate for 127.0.0.1 into dir and
// returns the CA file, certificate file and key file.
func testCA(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestRedisTLSAndACL runs a sale against a redis-server that speaks only TLS
// (certificate from a test CA) and admits only the README's ACL user. The
// commands work with rediss:// and the CA; a wrong CA or a wrong password
// fails at start with one clear line that never shows the password.
func TestRedisTLSAndACL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir, "good")
	otherCA, _, _ := testCA(t, dir, "other")
	const password = "acl-Pa55word-e2e"
	port, err := testsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--user", "default", "off", "--user"}
	// On the command line an ACL rule is one argument per word.
	srv := exec.Command("redis-server", append(args, strings.Fields(fmt.Sprintf(aclLine, password))...)...)
	if err := srv.Start(); err != nil {
		t.Fatalf("start TLS redis-server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	probe := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Username: "stockgate", Password: password,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, MaxRetries: -1})
	defer probe.Close()
	testsvc.Poll(t, 10*time.Second, "the TLS redis-server to answer", func() bool { return probe.Ping(t.Context()).Err() == nil })

	s := newStack(t)
	url := fmt.Sprintf("rediss://stockgate:%s@127.0.0.1:%d/0", password, port)
	good := []string{"REDIS_URL=" + url, "SSL_CERT_FILE=" + caFile}
	s.mustRun(t, "stockctl", "migrate")
	if r := s.run(t, good, "stockctl", "set", "TLS-1", "20"); r.code != 0 {
		t.Fatalf("stockctl set over TLS as the ACL user: exit %d: %s", r.code, r.stderr)
	}
	w := s.startWorker(t, good)
	r := s.run(t, good, "enqueue", "flash-sale", "--sku", "TLS-1", "--buyers", "50", "--wait", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"confirmed":20`) || !strings.Contains(r.stdout, `"rejected":30`) {
		t.Errorf("flash sale over TLS: exit %d, stdout %q, stderr %q; want 20 confirmed, 30 rejected", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(w.Output(), `"level":"ERROR"`) || strings.Contains(w.Output(), "NOPERM") {
		t.Errorf("worker under the ACL user logged errors or permission refusals:\n%s", w.Output())
	}
	if strings.Contains(w.Output(), password) {
		t.Error("worker log contains the Redis password")
	}

	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"unknown CA", []string{"REDIS_URL=" + url, "SSL_CERT_FILE=" + otherCA}, "certificate"},
		{"wrong password", []string{"REDIS_URL=" + strings.Replace(url, password, "wrong-"+password, 1), "SSL_CERT_FILE=" + caFile}, "WRONGPASS"},
		{"plain redis:// to a TLS port", []string{"REDIS_URL=" + strings.Replace(url, "rediss://", "redis://", 1)}, "does not answer"},
	} {
		r := s.run(t, c.env, "worker", "--admin-addr", "127.0.0.1:0")
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: worker exit %d, stderr %q; want a non-zero exit and one line mentioning %q", c.name, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stdout+r.stderr, password) {
			t.Errorf("%s: output contains the password", c.name)
		}
	}
}
