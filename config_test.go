package main

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
)

// The secrets that may come from a file, and where each lands.
var secretFiles = []struct {
	env, flag string
	got       func(server.Config) string
}{
	{"WECHAT_APPSECRET", "-appsecret", func(c server.Config) string { return c.AppSecret }},
	{"WECHAT_ENCODING_AES_KEY", "-aes-key", func(c server.Config) string { return c.AESKey }},
	{"WXREPLY_API_KEY", "-api-key", func(c server.Config) string { return c.APIKey }},
	{"WXREPLY_WEBHOOK_SECRET", "-webhook-secret", func(c server.Config) string { return c.WebhookSecret }},
}

// A valid EncodingAESKey, so that validate takes every secret here.
const fileAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

// TestSecretFromFile: VAR_FILE names a file whose content, less one
// trailing newline, is the secret.
func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	rulesFile := writeFile(t, dir, "rules.yaml", "default:\n  reply:\n    - text: hi\n")
	contents := []struct{ name, file, want string }{
		{"no newline", "S", "S"},
		{"a newline", "S\n", "S"},
		{"a CRLF", "S\r\n", "S"},
		{"only one newline trimmed", "S\n\n", "S\n"},
		{"spaces kept", " S \n", " S "},
	}
	for _, sf := range secretFiles {
		for _, ct := range contents {
			t.Run(sf.env+"/"+ct.name, func(t *testing.T) {
				secret := "s3cret-" + strings.ToLower(sf.env)
				if sf.env == "WECHAT_ENCODING_AES_KEY" {
					secret = fileAESKey
					if strings.ContainsAny(ct.want, " \n") {
						t.Skip("not a valid EncodingAESKey")
					}
				}
				path := writeFile(t, dir, sf.env+strings.ReplaceAll(ct.name, " ", "_"), strings.ReplaceAll(ct.file, "S", secret))
				var c config
				fs := newFlagSet("serve", &c, env(map[string]string{
					"WECHAT_TOKEN": "tok", "WECHAT_APPID": "wx1", "WXREPLY_RULES": rulesFile, sf.env + "_FILE": path,
				}), io.Discard)
				if err := c.parse(fs, nil); err != nil {
					t.Fatal(err)
				}
				if err := c.validate(); err != nil {
					t.Fatalf("validate: %v", err)
				}
				if got, want := sf.got(c.server(slog.Default())), strings.ReplaceAll(ct.want, "S", secret); got != want {
					t.Errorf("secret %q, want %q", got, want)
				}
			})
		}
	}
}

// TestSecretFileErrors: a variable set with its _FILE, or a _FILE that
// cannot be read or holds nothing, stops serve with exit 2 and one line
// that names the file or the variables, never a secret.
func TestSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	rulesFile := writeFile(t, dir, "rules.yaml", "default:\n  reply:\n    - text: hi\n")
	secretFile := writeFile(t, dir, "secret", "s3cret-in-file\n")
	emptyFile := writeFile(t, dir, "empty", "")
	newlineFile := writeFile(t, dir, "newline", "\n")
	bigFile := writeFile(t, dir, "big", "s3cret-big"+strings.Repeat("x", 70<<10))
	missing := filepath.Join(dir, "missing")
	for _, sf := range secretFiles {
		tests := []struct {
			name string
			env  map[string]string
			args []string
			want string
		}{
			{"both set", map[string]string{sf.env: "s3cret-in-env", sf.env + "_FILE": secretFile}, nil,
				sf.env + " and " + sf.env + "_FILE are both set"},
			{"missing file", map[string]string{sf.env + "_FILE": missing}, nil,
				sf.env + "_FILE: cannot read " + missing + ": no such file or directory"},
			{"empty file", map[string]string{sf.env + "_FILE": emptyFile}, nil, sf.env + "_FILE: " + emptyFile + " is empty"},
			{"only a newline", map[string]string{sf.env + "_FILE": newlineFile}, nil, sf.env + "_FILE: " + newlineFile + " is empty"},
			{"a directory", map[string]string{sf.env + "_FILE": dir}, nil, sf.env + "_FILE: " + dir + " is a directory"},
			{"too large", map[string]string{sf.env + "_FILE": bigFile}, nil, bigFile + " is larger than 64 KiB"},
			// The flag overrides both, so the next problem is the one
			// reported.
			{"the flag overrides both", map[string]string{sf.env: "s3cret-in-env", sf.env + "_FILE": missing,
				"WXREPLY_RULES": filepath.Join(dir, "nope.yaml")}, []string{sf.flag, fileAESKey}, "nope.yaml"},
		}
		for _, tt := range tests {
			t.Run(sf.env+"/"+tt.name, func(t *testing.T) {
				env := map[string]string{"WECHAT_TOKEN": "s3cretToken", "WECHAT_APPID": "wx1", "WXREPLY_RULES": rulesFile,
					"WXREPLY_STORE": "memory", "WXREPLY_ADDR": "256.0.0.1:bad"}
				for k, v := range tt.env {
					env[k] = v
				}
				code, _, errOut := runWith(env, append([]string{"serve"}, tt.args...)...)
				if code != 2 {
					t.Fatalf("exit %d, want 2; stderr %q", code, errOut)
				}
				lines := strings.Split(strings.TrimSpace(errOut), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
					t.Fatalf("stderr %q, want one line naming %q", errOut, tt.want)
				}
				if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, fileAESKey) {
					t.Fatalf("the error repeats a secret: %q", errOut)
				}
			})
		}
	}
}

// TestSecretNotInHelp: -h shows each flag's default, which is the
// environment's value; a secret's is never shown.
func TestSecretNotInHelp(t *testing.T) {
	secretFile := writeFile(t, t.TempDir(), "key", "s3cret-api-key\n")
	code, _, errOut := runWith(map[string]string{"WECHAT_TOKEN": "s3cretToken", "WECHAT_APPSECRET": "s3cret-appsecret",
		"WXREPLY_API_KEY_FILE": secretFile, "WXREPLY_WEBHOOK_SECRET": "s3cret-hook", "WECHAT_ENCODING_AES_KEY": fileAESKey}, "serve", "-h")
	if code != 0 || !strings.Contains(errOut, "-api-key") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
	if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, fileAESKey) {
		t.Fatalf("-h shows a secret:\n%s", errOut)
	}
}

// TestAPIKeyFileServes: a server configured from WXREPLY_API_KEY_FILE
// takes the file's key, without its newline.
func TestAPIKeyFileServes(t *testing.T) {
	path := writeFile(t, t.TempDir(), "api-key", "key-from-a-file\n")
	c := config{}
	fs := newFlagSet("serve", &c, env(map[string]string{"WXREPLY_API_KEY_FILE": path}), io.Discard)
	if err := c.parse(fs, nil); err != nil || len(c.envErrs) != 0 {
		t.Fatal(err, c.envErrs)
	}
	c.token, c.rulesPath, c.store, c.shutdownTimeout = "tok", "rules.yaml", "memory", 5*time.Second
	base := startServer(t, &c)
	for key, want := range map[string]int{"key-from-a-file": http.StatusNotFound, "another-key": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/messages/0123456789abcdef0123456789abcdef", nil)
		req.Header["Authorization"] = []string{"Bearer " + key}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("key %q: %d, want %d", key, resp.StatusCode, want)
		}
	}
}

// TestCheckToken: the MP console takes 3 to 32 English letters and
// digits as the Token.
func TestCheckToken(t *testing.T) {
	for token, want := range map[string]string{
		"wxreplytoken":          "",
		"abc":                   "",
		"Ab3":                   "",
		strings.Repeat("a", 32): "",
		"ab":                    "it is 2 characters long",
		strings.Repeat("a", 33): "it is 33 characters long",
		"with-dash":             "character 5 is not a letter or digit",
		"with space":            "character 5 is not a letter or digit",
		"令牌token":               "character 1 is not a letter or digit",
		"token令牌":               "character 6 is not a letter or digit",
		"tokenｔ":                "character 6 is not a letter or digit",
	} {
		err := checkToken(token)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q refused: %v", token, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want an error saying %q", token, err, want)
		case err != nil && strings.Contains(err.Error(), token):
			t.Errorf("the error repeats the Token: %v", err)
		}
	}
}

// TestLogDurations: a duration is logged as people write it, "25s", in
// both formats, not as the JSON handler's nanoseconds.
func TestLogDurations(t *testing.T) {
	for format, want := range map[string][]string{
		"json": {`"timeout":"25s"`, `"backoff":"1.5ms"`, `"count":3`},
		"text": {"timeout=25s", "g.backoff=1.5ms", "count=3"},
	} {
		var b strings.Builder
		c := config{logLevel: "info", logFormat: format}
		log, err := c.logger(&b)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", "timeout", 25*time.Second, slog.Group("g", "backoff", 1500*time.Microsecond), "count", 3)
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: %s does not hold %s", format, b.String(), w)
			}
		}
	}
}
