package test

// The deployment files — the Dockerfile and .dockerignore at the root, and
// deploy/ — tested as far as a machine without a Docker engine allows:
// here, the compose file read against the repository and the systemd unit
// verified by systemd-analyze and started with; in deploy_docker_test.go,
// the Dockerfile and its build context; in deploy_nginx_test.go, both
// nginx configurations checked and served on loopback in front of fake
// instances. A missing nginx or systemd-analyze skips its test, and fails
// it under CI=true (.ci/run installs both). go test -run Deploy runs them.

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// deployTool is the path of a tool a deployment test needs; without it
// the test skips, or fails under CI=true.
func deployTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian puts nginx in /usr/sbin, which a user's PATH may lack.
		if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
			return "/usr/sbin/" + name
		}
		msg := fmt.Sprintf("%s not found on PATH: install it (apt-get install %s; .ci/run does)", name, pkg)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true: not skipping)", msg)
		}
		t.Skip(msg)
	}
	return p
}

// repoFile is the content of a file of the repository, by its path from
// the root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type composeService struct {
	Image string `yaml:"image"`
	Build struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
		Restart   bool   `yaml:"restart"`
	} `yaml:"depends_on"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Networks        map[string]struct {
		IPv4Address string `yaml:"ipv4_address"`
	} `yaml:"networks"`
}

func TestDeployCompose(t *testing.T) {
	var c struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
		Networks map[string]struct {
			IPAM struct {
				Config []struct {
					Subnet string `yaml:"subnet"`
				} `yaml:"config"`
			} `yaml:"ipam"`
		} `yaml:"networks"`
	}
	if err := yaml.Unmarshal([]byte(repoFile(t, "deploy/compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(c.Services))
	if want := []string{"nginx", "redis", "wxreply-1", "wxreply-2"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	redis := c.Services["redis"]
	for _, opt := range [][2]string{{"--appendonly", "yes"}, {"--maxmemory-policy", "noeviction"}} {
		if i := slices.Index(redis.Command, opt[0]); i < 0 || i+1 >= len(redis.Command) || redis.Command[i+1] != opt[1] {
			t.Errorf("redis command %q lacks %s %s", redis.Command, opt[0], opt[1])
		}
	}

	nginx := c.Services["nginx"]
	proxyAddr := nginx.Networks["default"].IPv4Address
	subnets := c.Networks["default"].IPAM.Config
	if len(subnets) != 1 {
		t.Fatalf("default network subnets %v, want one", subnets)
	}
	if subnet, err := netip.ParsePrefix(subnets[0].Subnet); err != nil {
		t.Error(err)
	} else if addr, err := netip.ParseAddr(proxyAddr); err != nil || !subnet.Contains(addr) {
		t.Errorf("nginx's address %q is not in the subnet %s", proxyAddr, subnet)
	}

	one, two := c.Services["wxreply-1"], c.Services["wxreply-2"]
	if !reflect.DeepEqual(one, two) {
		t.Error("wxreply-1 and wxreply-2 differ")
	}
	if _, err := os.Stat(filepath.Join("..", "deploy", one.Build.Context, one.Build.Dockerfile)); err != nil {
		t.Errorf("build: %v", err)
	}
	env := one.Environment
	store, ok := strings.CutPrefix(env["WXREPLY_STORE"], "redis://")
	if host := store[strings.LastIndex(store, "@")+1:]; !ok || !strings.HasPrefix(host, "redis:6379/") {
		t.Errorf("WXREPLY_STORE %q is not the redis service", env["WXREPLY_STORE"])
	}
	if env["WXREPLY_RULES"] != "/etc/wxreply/rules.yaml" {
		t.Errorf("WXREPLY_RULES %q", env["WXREPLY_RULES"])
	}
	if env["WXREPLY_TRUSTED_PROXIES"] != proxyAddr {
		t.Errorf("WXREPLY_TRUSTED_PROXIES %q, not nginx's address %q", env["WXREPLY_TRUSTED_PROXIES"], proxyAddr)
	}
	if d, err := time.ParseDuration(one.StopGracePeriod); err != nil || d <= 25*time.Second {
		t.Errorf("stop_grace_period %q, want more than WXREPLY_SHUTDOWN_TIMEOUT's 25s", one.StopGracePeriod)
	}
	if _, ok := one.DependsOn["redis"]; !ok {
		t.Error("the instances do not depend on redis")
	}
	for _, n := range []string{"wxreply-1", "wxreply-2"} {
		if !nginx.DependsOn[n].Restart {
			t.Errorf("nginx is not restarted with %s (it resolves the upstream's names once)", n)
		}
	}

	// Every mount: a bind mount's source exists, a named volume is declared.
	var nginxConf string
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			dst, _, _ = strings.Cut(dst, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join("..", "deploy", src)); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
				if name == "nginx" && dst == "/etc/nginx/conf.d/default.conf" {
					nginxConf = path.Join("deploy", src)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %s is not declared", name, src)
			}
		}
	}
	if nginxConf == "" {
		t.Fatal("nginx mounts no site on /etc/nginx/conf.d/default.conf")
	}
	// nginx's site proxies to the two instances, on the published port.
	conf := repoFile(t, nginxConf)
	var servers []string
	for _, m := range upstreamServerRE.FindAllStringSubmatch(conf, -1) {
		servers = append(servers, m[2])
	}
	if want := []string{"wxreply-1:8080", "wxreply-2:8080"}; !slices.Equal(servers, want) {
		t.Errorf("%s: upstream servers %v, want %v", nginxConf, servers, want)
	}
	if !slices.Equal(nginx.Ports, []string{"8080:80"}) || !listenRE.MatchString(conf) || listenRE.FindStringSubmatch(conf)[2] != "80" {
		t.Errorf("nginx ports %v do not lead to %s's listen 80", nginx.Ports, nginxConf)
	}
}

var (
	listenRE         = regexp.MustCompile(`(?m)^(\s*listen\s+)([^\s;]+)([^;]*;)`)
	upstreamServerRE = regexp.MustCompile(`(?m)^(\s*server\s+)([^\s;{]+)([^;]*;)`)
	certRE           = regexp.MustCompile(`(?m)^(\s*ssl_certificate(?:_key)?\s+)(\S+);`)
	rootRE           = regexp.MustCompile(`(?m)^(\s*root\s+)(\S+);`)
)

func TestDeploySystemdUnit(t *testing.T) {
	analyze := deployTool(t, "systemd-analyze", "systemd")
	unit := repoFile(t, "deploy/systemd/wxreply.service")
	lines := map[string]bool{}
	for _, l := range strings.Split(unit, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/wxreply serve", "ExecReload=/bin/kill -HUP $MAINPID",
		"KillSignal=SIGTERM", "TimeoutStopSec=30", "Restart=on-failure",
		"DynamicUser=yes", "StateDirectory=wxreply", "Environment=WXREPLY_STORE=/var/lib/wxreply",
		"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes", "LockPersonality=yes",
	} {
		if !lines[want] {
			t.Errorf("the unit lacks %s", want)
		}
	}
	// Every secret the server reads from a _FILE variable has its pair of
	// lines, given or commented out: the credential and the variable
	// naming it in $CREDENTIALS_DIRECTORY.
	secrets := regexp.MustCompile(`envSecret\(getenv, "[^"]+", "([A-Z_]+)"\)`).FindAllStringSubmatch(repoFile(t, "config.go"), -1)
	if len(secrets) == 0 {
		t.Fatal("config.go reads no secret with envSecret: this test is out of date")
	}
	for _, s := range secrets {
		m := regexp.MustCompile(`(?m)^#?Environment=` + s[1] + `_FILE=%d/(\S+)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Errorf("the unit has no %s_FILE=%%d/… line", s[1])
			continue
		}
		if !regexp.MustCompile(`(?m)^#?LoadCredential=` + regexp.QuoteMeta(m[1]) + `:/etc/wxreply/credentials/` + regexp.QuoteMeta(m[1]) + `$`).MatchString(unit) {
			t.Errorf("the unit loads no credential %s for %s_FILE", m[1], s[1])
		}
	}

	// verify wants ExecStart's binary to exist: the unit, on the binary
	// the tests built.
	dir := t.TempDir()
	file := filepath.Join(dir, "wxreply.service")
	bin := wxreplyBinary(t)
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(unit, "/usr/local/bin/wxreply", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", file).CombinedOutput()
	if err != nil || strings.Contains(string(out), "wxreply.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The exposure systemd gives the sandbox, from 0 (locked down) to 10:
	// at most 2.0 (the unit has 1.2; "OK" ends at 5.0). --threshold counts
	// in tenths.
	out, err = exec.Command(analyze, "security", "--offline=yes", "--no-pager", "--threshold=20", file).CombinedOutput()
	score := regexp.MustCompile(`Overall exposure level for wxreply.service: ([0-9.]+ \S+)`).FindSubmatch(out)
	if err != nil || score == nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	} else {
		t.Logf("systemd-analyze security: %s", score[1])
	}

	// The unit's environment is one the server starts with, the secret
	// read from the credentials directory (%d).
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "appsecret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"WECHAT_TOKEN=t0ken", "WECHAT_API_BASE=http://127.0.0.1:1"}
	for _, m := range regexp.MustCompile(`(?m)^Environment=(\S+)$`).FindAllStringSubmatch(unit, -1) {
		if k, _, _ := strings.Cut(m[1], "="); k != "WXREPLY_ADDR" && k != "WXREPLY_STORE" && k != "WXREPLY_RULES" {
			env = append(env, strings.ReplaceAll(m[1], "%d", creds))
		}
	}
	p := startWxreply(t, append(env, "WXREPLY_RULES="+filepath.Join("..", "rules.yaml")), "serve")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exited %d with the unit's environment:\n%s", code, p.logs.String())
	}
}
