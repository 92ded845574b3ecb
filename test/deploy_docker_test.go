package test

// The Docker image's files, the Dockerfile and .dockerignore, read against
// the repository: there is no Docker engine on CI's machine to build the
// image, so these tests check what a build would use — the Go release and
// build command README gives, the COPY sources, the runtime's user,
// volume and paths — and copy the build context as .dockerignore leaves
// it, to find in it every file the build compiles.

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Go release and build command that README's "One binary" gives,
// which .ci/run and the Dockerfile must follow.
var readmeBuildRE = regexp.MustCompile("`GOTOOLCHAIN=go([0-9.]+) (CGO_ENABLED=0 go build [^`]*)`")

func TestDeployDockerfile(t *testing.T) {
	m := readmeBuildRE.FindStringSubmatch(repoFile(t, "README.md"))
	if m == nil {
		t.Fatal("README has no `GOTOOLCHAIN=go… CGO_ENABLED=0 go build …` command")
	}
	goVersion, readmeBuild := m[1], m[2]
	if ci := repoFile(t, ".ci/run"); !strings.Contains(ci, "export GOTOOLCHAIN=go"+goVersion+"\n") {
		t.Errorf(".ci/run does not build on go%s, README's release", goVersion)
	}

	stages := dockerStages(t, repoFile(t, "Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build and a runtime stage", len(stages))
	}
	build, runtime := stages[0], stages[1]
	if want := "golang:" + goVersion + " AS build"; build.from != want {
		t.Errorf("build stage FROM %s, want %s (README's release)", build.from, want)
	}
	var buildCmd string
	for _, in := range build.instructions("RUN") {
		for _, part := range strings.Split(in, "&&") {
			if strings.Contains(part, "go build") {
				buildCmd = strings.TrimSpace(part)
			}
		}
	}
	if got, want := withoutOutput(buildCmd), withoutOutput(readmeBuild); !slices.Equal(got, want) {
		t.Errorf("the Dockerfile builds with %q, README with %q", buildCmd, readmeBuild)
	}

	ignore := readDockerignore(t)
	for _, st := range stages {
		for _, in := range st.instructions("COPY") {
			args := strings.Fields(in)
			var from string
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				if v, ok := strings.CutPrefix(args[0], "--from="); ok {
					from = v
				}
				args = args[1:]
			}
			if from != "" {
				if from != build.name {
					t.Errorf("COPY %s: --from=%s is not the build stage", in, from)
				}
				continue
			}
			for _, src := range args[:len(args)-1] {
				rel := path.Clean(src)
				if _, err := os.Stat(filepath.Join("..", rel)); err != nil {
					t.Errorf("COPY %s: %v", in, err)
				}
				if rel != "." && ignore.excludes(rel) {
					t.Errorf("COPY %s: .dockerignore leaves %s out of the context", in, rel)
				}
			}
		}
	}

	if !strings.HasPrefix(runtime.from, "gcr.io/distroless/static") && runtime.from != "scratch" {
		t.Errorf("runtime FROM %s, want distroless static or scratch", runtime.from)
	}
	if h := runtime.instructions("HEALTHCHECK"); len(h) > 0 {
		t.Errorf("HEALTHCHECK %s: the runtime image has no shell to run one", h[0])
	}
	env := map[string]string{}
	for _, in := range runtime.instructions("ENV") {
		for _, kv := range strings.Fields(in) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	copied := map[string]bool{}
	for _, in := range runtime.instructions("COPY") {
		args := strings.Fields(in)
		copied[path.Clean(args[len(args)-1])] = true
	}
	for _, want := range []struct{ what, got, want string }{
		{"WXREPLY_STORE", env["WXREPLY_STORE"], "/var/lib/wxreply"},
		{"WXREPLY_RULES", env["WXREPLY_RULES"], "/etc/wxreply/rules.yaml"},
		{"VOLUME", strings.Join(runtime.instructions("VOLUME"), " "), "/var/lib/wxreply"},
		{"EXPOSE", strings.Join(runtime.instructions("EXPOSE"), " "), "8080"},
		{"USER", strings.Join(runtime.instructions("USER"), " "), "65532:65532"},
		{"ENTRYPOINT", strings.Join(runtime.instructions("ENTRYPOINT"), " "), `["/usr/local/bin/wxreply"]`},
	} {
		if want.got != want.want {
			t.Errorf("runtime %s %q, want %q", want.what, want.got, want.want)
		}
	}
	for _, p := range []string{"/usr/local/bin/wxreply", "/etc/wxreply/rules.yaml", "/etc/wxreply/media", "/var/lib/wxreply"} {
		if !copied[p] {
			t.Errorf("the runtime stage copies nothing to %s", p)
		}
	}
}

// withoutOutput is a go build command's words less -o and its argument.
func withoutOutput(cmd string) []string {
	var words []string
	for _, w := range regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(cmd, -1) {
		words = append(words, strings.Trim(w, `"`))
	}
	if i := slices.Index(words, "-o"); i >= 0 && i+1 < len(words) {
		words = slices.Delete(words, i, i+2)
	}
	return words
}

type dockerStage struct {
	from, name string
	lines      [][2]string // instruction, arguments
}

func (s dockerStage) instructions(name string) []string {
	var args []string
	for _, l := range s.lines {
		if l[0] == name {
			args = append(args, l[1])
		}
	}
	return args
}

// dockerStages reads a Dockerfile's instructions, continuation lines
// joined and comments dropped, by stage.
func dockerStages(t *testing.T, src string) []dockerStage {
	t.Helper()
	var stages []dockerStage
	var logical string
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && logical == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			logical += cont + " "
			continue
		}
		logical += trimmed
		inst, args, _ := strings.Cut(logical, " ")
		inst, args, logical = strings.ToUpper(inst), strings.Join(strings.Fields(args), " "), ""
		if inst == "FROM" {
			st := dockerStage{from: args}
			if i := strings.Index(args, " AS "); i >= 0 {
				st.name = args[i+len(" AS "):]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s before FROM", inst)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, [2]string{inst, args})
	}
	return stages
}

// dockerignore holds .dockerignore's patterns, read as Docker reads the
// ones this repository uses: * and ? within a name, ** across names, !
// to take back; a path is left out when the last pattern that matches it,
// or one of its parent directories, is not a !.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func readDockerignore(t *testing.T) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(repoFile(t, ".dockerignore"), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		p, negate := strings.CutPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(p, "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(?:.*/)?")
				i += 3
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i += 2
			case p[i] == '*':
				re.WriteString("[^/]*")
				i++
			case p[i] == '?':
				re.WriteString("[^/]")
				i++
			case p[i] == '[' || p[i] == '\\':
				t.Fatalf(".dockerignore: %q: this test does not read [ or \\", p)
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
				i++
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), negate})
	}
	return d
}

func (d dockerignore) excludes(rel string) bool {
	parts := strings.Split(rel, "/")
	out := false
	for _, p := range d {
		for i := 1; i <= len(parts); i++ {
			if p.re.MatchString(strings.Join(parts[:i], "/")) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

// TestDeployDockerContext copies the build context as .dockerignore
// leaves it and checks that the image's build finds in it every package
// it compiles, whole, and the sample rules with their media.
func TestDeployDockerContext(t *testing.T) {
	ignore := readDockerignore(t)
	ctx := t.TempDir()
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignore.excludes(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(ctx, filepath.FromSlash(rel))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{".git", "test", "deploy", "delivery.test"} {
		if _, err := os.Stat(filepath.Join(ctx, gone)); err == nil {
			t.Errorf("%s is in the build context", gone)
		}
	}

	// The build's packages and their files, in the repository and in the
	// context: the same, or the image does not build what CI tests.
	list := func(dir string) string {
		cmd := exec.Command("go", "list", "-deps", "-f",
			"{{if .Module}}{{if .Module.Main}}{{.ImportPath}} {{.GoFiles}} {{.EmbedFiles}}{{end}}{{end}}", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list in %s: %v\n%s", dir, err, out)
		}
		return string(out)
	}
	if repo, inCtx := list(".."), list(ctx); repo != inCtx {
		t.Errorf("the build context lacks files the build compiles:\nrepository:\n%s\ncontext:\n%s", repo, inCtx)
	}
	// The Dockerfile's build runs `wxreply check rules.yaml` in it.
	if code, out, _ := runWxreply(t, []string{"PATH=" + os.Getenv("PATH")}, "check", filepath.Join(ctx, "rules.yaml")); code != 0 {
		t.Errorf("check of the context's rules.yaml exited %d:\n%s", code, out)
	}
}
