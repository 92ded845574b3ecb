package test

// nginx in front of fake wxreply instances: the deployment's nginx
// configurations (deploy/nginx), checked with nginx -t and then served on
// loopback.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDeployNginxSite checks and serves deploy/nginx/wxreply.conf: TLS,
// the redirect and ACME on port 80, the public callback and the operator's
// locations, in front of two fake instances.
func TestDeployNginxSite(t *testing.T) {
	testNginx(t, "deploy/nginx/wxreply.conf", true)
}

// TestDeployNginxCompose does the same for deploy/nginx/compose.conf,
// compose's plain-HTTP nginx.
func TestDeployNginxCompose(t *testing.T) {
	testNginx(t, "deploy/nginx/compose.conf", false)
}

// siteHost is the host name the configurations are written for.
const siteHost = "your.host"

// fakeInstance stands for one wxreply instance behind nginx: it answers
// every request with one status and records what nginx forwarded.
type fakeInstance struct {
	srv *httptest.Server

	mu    sync.Mutex
	reqs  []forwarded
	conns int // connections nginx opened to it
}

type forwarded struct{ method, path, xff, proto string }

func newFakeInstance(t *testing.T, status int, body string) *fakeInstance {
	f := &fakeInstance{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, forwarded{r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto")})
		f.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// seen are the requests it received for path.
func (f *fakeInstance) seen(path string) []forwarded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []forwarded
	for _, r := range f.reqs {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// testNginx runs nginx -t on the configuration at rel (a file for inside
// http { }), then nginx itself, with its listen addresses moved to free
// loopback ports, its upstream servers replaced by two fake instances
// (the first answers every request 503, as one whose store cannot be
// written), and with TLS, its certificate by a self-signed one and its
// ACME root by a directory holding a challenge.
func testNginx(t *testing.T, rel string, withTLS bool) {
	nginx := deployTool(t, "nginx", "nginx-light")
	conf := repoFile(t, rel)
	dir := t.TempDir()
	down := newFakeInstance(t, http.StatusServiceUnavailable, "store cannot be written")
	up := newFakeInstance(t, http.StatusOK, "success")

	// The upstream: one line for each instance, with the options of the
	// configuration's first (a site written for one instance gets a second
	// line, as its comment says to add).
	first := upstreamServerRE.FindStringSubmatch(conf)
	if first == nil {
		t.Fatalf("%s has no upstream server", rel)
	}
	var servers []string
	for _, f := range []*fakeInstance{down, up} {
		servers = append(servers, first[1]+f.srv.Listener.Addr().String()+first[3])
	}
	replaced := false
	conf = upstreamServerRE.ReplaceAllStringFunc(conf, func(string) string {
		if replaced {
			return ""
		}
		replaced = true
		return strings.Join(servers, "\n")
	})
	listens := map[string]string{} // the configuration's address: the loopback one
	conf = listenRE.ReplaceAllStringFunc(conf, func(s string) string {
		m := listenRE.FindStringSubmatch(s)
		listens[m[2]] = freeAddr(t)
		return m[1] + listens[m[2]] + m[3]
	})
	var roots *x509.CertPool
	if withTLS {
		var certFile, keyFile string
		certFile, keyFile, roots = selfSigned(t, dir, siteHost)
		conf = certRE.ReplaceAllStringFunc(conf, func(s string) string {
			m := certRE.FindStringSubmatch(s)
			if strings.Contains(m[1], "_key") {
				return m[1] + keyFile + ";"
			}
			return m[1] + certFile + ";"
		})
		acme := filepath.Join(dir, "acme")
		if err := os.MkdirAll(filepath.Join(acme, ".well-known", "acme-challenge"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(acme, ".well-known", "acme-challenge", "probe"), []byte("acme"), 0o644); err != nil {
			t.Fatal(err)
		}
		conf = rootRE.ReplaceAllString(conf, "${1}"+acme+";")
	}
	site := filepath.Join(dir, "site.conf")
	if err := os.WriteFile(site, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Everything nginx writes goes under dir, so that neither -t nor the
	// server needs root.
	main := filepath.Join(dir, "nginx.conf")
	errorLog := filepath.Join(dir, "error.log")
	if err := os.WriteFile(main, []byte(fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    include %[2]s;
}
`, dir, site)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-e", errorLog, "-p", dir+"/", "-c", main).CombinedOutput()
	if err != nil || strings.Contains(string(out), "[warn]") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}

	cmd := exec.Command(nginx, "-e", errorLog, "-p", dir+"/", "-c", main, "-g", "daemon off; master_process off;")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	nginxLog := func() string { b, _ := os.ReadFile(errorLog); return string(b) }
	for _, addr := range listens {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			select {
			case err := <-exited:
				t.Fatalf("nginx exited: %v\n%s", err, nginxLog())
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx does not listen on %s\n%s", addr, nginxLog())
			}
		}
	}

	// Clients that reach nginx from an operator's address (127.0.0.1) and
	// from outside them (127.0.0.2), asking for siteHost.
	client := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				if listens[port] == "" {
					return nil, fmt.Errorf("the configuration does not listen on %s", port)
				}
				return d.DialContext(ctx, network, listens[port])
			},
			TLSClientConfig: &tls.Config{RootCAs: roots},
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{
			Transport:     tr,
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	operator, outsider := client("127.0.0.1"), client("127.0.0.2")
	scheme := "http"
	if withTLS {
		scheme = "https"
	}
	base := scheme + "://" + siteHost
	do := func(c *http.Client, method, url, xff string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader("<xml/>"))
		if err != nil {
			t.Fatal(err)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, url, err, nginxLog())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	if withTLS {
		code, _, h := do(outsider, "GET", "http://"+siteHost+"/wechat?echostr=1", "")
		if want := "https://" + siteHost + "/wechat?echostr=1"; code != http.StatusMovedPermanently || h.Get("Location") != want {
			t.Errorf("port 80: %d to %q, want 301 to %s", code, h.Get("Location"), want)
		}
		if code, body, _ := do(outsider, "GET", "http://"+siteHost+"/.well-known/acme-challenge/probe", ""); code != 200 || body != "acme" {
			t.Errorf("port 80, ACME challenge: %d %q, want 200 from the webroot", code, body)
		}
	}

	// The callback, from anywhere: an instance's 503 is tried on the other
	// one, and the instance learns the client's address, right-most.
	const callbacks = 4
	for i := range callbacks {
		if code, body, _ := do(outsider, "POST", base+fmt.Sprintf("/wechat?nonce=%d", i), "203.0.113.7"); code != 200 || body != "success" {
			t.Errorf("POST /wechat: %d %q, want the other instance's 200", code, body)
		}
	}
	if len(down.seen("/wechat")) == 0 {
		t.Error("no callback reached the instance answering 503: round-robin untested")
	}
	got := up.seen("/wechat")
	if len(got) != callbacks {
		t.Errorf("%d of %d callbacks reached the healthy instance", len(got), callbacks)
	}
	for _, r := range got {
		if r.xff != "203.0.113.7, 127.0.0.2" || r.proto != scheme {
			t.Errorf("forwarded with X-Forwarded-For %q, X-Forwarded-Proto %q; want %q, %q", r.xff, r.proto, "203.0.113.7, 127.0.0.2", scheme)
		}
	}

	// The operator's locations: refused from outside, served to the
	// operator's networks.
	for _, p := range []string{"/metrics", "/healthz", "/api/v1/messages"} {
		if code, _, _ := do(outsider, "GET", base+p, ""); code != http.StatusForbidden {
			t.Errorf("GET %s from outside: %d, want 403", p, code)
		}
		if len(down.seen(p))+len(up.seen(p)) != 0 {
			t.Errorf("GET %s from outside reached an instance", p)
		}
	}
	for _, p := range []string{"/metrics", "/healthz"} {
		if code, body, _ := do(operator, "GET", base+p, ""); code != 200 || body != "success" {
			t.Errorf("GET %s from the operator: %d %q, want 200", p, code, body)
		}
	}
	// A push is sent once: a 503 is the answer, not a reason to send it
	// again (the other instance might record it a second time).
	const pushes = 4
	refused := 0
	for range pushes {
		code, _, _ := do(operator, "POST", base+"/api/v1/messages", "")
		if code == http.StatusServiceUnavailable {
			refused++
		}
	}
	if d, u := len(down.seen("/api/v1/messages")), len(up.seen("/api/v1/messages")); d+u != pushes || d != refused {
		t.Errorf("%d pushes: %d reached the 503 instance, %d the other, %d answered 503; want each sent once", pushes, d, u, refused)
	}
	if code, _, _ := do(operator, "GET", base+"/", ""); code != http.StatusNotFound || len(down.seen("/"))+len(up.seen("/")) != 0 {
		t.Errorf("GET /: %d, want nginx's 404", code)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.conns >= len(up.reqs) {
		t.Errorf("%d connections for %d requests: no keep-alive to the upstream", up.conns, len(up.reqs))
	}
}

// selfSigned writes a certificate for host (a name or an IP address) that
// is its own CA, and its key, into dir, and returns them with a pool that
// trusts the certificate.
func selfSigned(t *testing.T, dir, host string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
