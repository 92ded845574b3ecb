package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxreply/wxreply/store/storetest"
)

// rediss:// reaches Redis over TLS, verifying its certificate against the
// system's roots or, for a private CA, the file SSL_CERT_FILE names: the
// real binary, against a redis-server that takes TLS only.
func TestRedisOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := storetest.StartRedis(t, storetest.RedisServerOptions{Args: []string{
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-auth-clients", "no",
	}})
	prefix := storetest.RedisPrefix(t)
	u := "rediss://127.0.0.1:" + strconv.Itoa(tlsPort) + "/0?prefix=" + url.QueryEscape(prefix)
	p := startWxreply(t, []string{"WECHAT_TOKEN=" + testToken, rulesEnv(t), "WXREPLY_STORE=" + u,
		"SSL_CERT_FILE=" + certFile, "WXREPLY_LOG_LEVEL=warn"})
	// Healthy means the probe wrote its key: over TLS, as the plain port
	// (the test's own way in) shows.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if n, err := rdb.Exists(t.Context(), prefix+"health").Result(); err != nil || n != 1 {
		t.Fatalf("the health probe's key: %d, %v; want written through TLS", n, err)
	}
	if out := p.logs.String(); out != "" {
		t.Errorf("warnings with a TLS Redis:\n%s", out)
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 that is its own CA.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wxreply test redis"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
