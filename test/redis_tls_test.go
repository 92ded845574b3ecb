package test

import (
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wxreply/wxreply/store/storetest"
)

// rediss:// reaches Redis over TLS, verifying its certificate against the
// system's roots or, for a private CA, the file SSL_CERT_FILE names: the
// real binary, against a redis-server that takes TLS only.
func TestRedisOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir, "127.0.0.1")
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
