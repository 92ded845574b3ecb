package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, out, errOut := runWith(nil, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "wxreply ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want one line naming wxreply's version and %s", args, code, out, errOut, runtime.Version())
		}
	}
	if code, _, errOut := runWith(nil, "version", "extra"); code != 2 || !strings.Contains(errOut, "usage: wxreply version") {
		t.Errorf("version extra: exit %d, %q", code, errOut)
	}
}

func TestVersionLine(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "d19d895c0a1b2c3d4e5f60718293a4b5c6d7e8f9"}, {Key: "vcs.modified", Value: "true"}}
	tests := []struct {
		name string
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"from a checkout", "", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/wxreply/wxreply", Version: "(devel)"}, Settings: vcs},
			"wxreply (devel) built with go1.26.1 from revision d19d895c0a1b2c3d4e5f60718293a4b5c6d7e8f9 (modified)"},
		{"clean checkout", "", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.0.0-20261201000000-d19d895c0a1b"}, Settings: vcs[:2]},
			"wxreply v0.0.0-20261201000000-d19d895c0a1b built with go1.26.1 from revision d19d895c0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
		{"go install @v1.2.3", "", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.2.3"}},
			"wxreply v1.2.3 built with go1.26.1"},
		{"set at build time", "v2.0.0", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs[:2]},
			"wxreply v2.0.0 built with go1.26.1 from revision d19d895c0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
		{"no build information", "", nil, "wxreply (devel) built with " + runtime.Version()},
	}
	for _, tt := range tests {
		if got := versionLine(tt.set, tt.info); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// The built binary: a version set with -ldflags -X main.version wins, and
// the Go version is the toolchain's.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "wxreply")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "wxreply v9.8.7-test built with " + strings.TrimSpace(string(goVersion))
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("version: %q, want it to start with %q", out, want)
	}
	// Every command's -h, from the binary too, shows its own flags only.
	for _, cmd := range []string{"send", "replay", "sandbox", "check"} {
		c := exec.Command(bin, cmd, "-h")
		c.Env = []string{"PATH=" + os.Getenv("PATH")}
		help, _ := c.CombinedOutput()
		if strings.Contains(string(help), "-shutdown-timeout") || !strings.Contains(string(help), "usage: wxreply "+cmd) {
			t.Errorf("%s -h:\n%s", cmd, help)
		}
	}
}
