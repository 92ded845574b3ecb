package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/server"
)

// config is everything the contract lets an operator set. Each flag
// defaults to its environment variable, so a flag given wins.
type config struct {
	token, appID, appSecret, aesKey string
	apiBase, addr, rulesPath        string
	apiKey, webhookSecret           string
	store                           string

	shutdownTimeout time.Duration
	maxRetryAge     time.Duration
	workers         int
	queueSize       int
	lease           time.Duration
	typing          bool
	legacyToken     bool
	logLevel        string
	logFormat       string
	logBuffer       *server.LogBuffer // set by serve: its logs go through one

	maxClockSkew   time.Duration
	allowFrom      networks
	trustedProxies networks
	apiRate        float64 // requests a second per client; 0: no limit

	// envErrs are environment values that did not parse, by the name of
	// the flag that overrides them: reported unless that flag is given,
	// never silently replaced by the default.
	envErrs map[string]error
}

func newFlagSet(name string, c *config, getenv func(string) string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wxreply "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.token, "token", getenv("WECHAT_TOKEN"), "Token from the MP console's server settings (WECHAT_TOKEN)")
	fs.StringVar(&c.appID, "appid", getenv("WECHAT_APPID"), "the account's AppID (WECHAT_APPID)")
	fs.StringVar(&c.appSecret, "appsecret", c.envSecret(getenv, "appsecret", "WECHAT_APPSECRET"), "the AppSecret (WECHAT_APPSECRET or WECHAT_APPSECRET_FILE)")
	fs.StringVar(&c.aesKey, "aes-key", c.envSecret(getenv, "aes-key", "WECHAT_ENCODING_AES_KEY"), "43-character EncodingAESKey; empty: plaintext mode (WECHAT_ENCODING_AES_KEY or WECHAT_ENCODING_AES_KEY_FILE)")
	fs.StringVar(&c.apiBase, "api-base", envOr(getenv, "WECHAT_API_BASE", "https://api.weixin.qq.com"), "base URL of the WeChat API (WECHAT_API_BASE)")
	fs.StringVar(&c.addr, "addr", envOr(getenv, "WXREPLY_ADDR", ":8080"), "listen address (WXREPLY_ADDR)")
	fs.StringVar(&c.rulesPath, "rules", envOr(getenv, "WXREPLY_RULES", "rules.yaml"), "the rules file (WXREPLY_RULES)")
	fs.StringVar(&c.apiKey, "api-key", c.envSecret(getenv, "api-key", "WXREPLY_API_KEY"), "bearer key for the push API under /api/v1; empty: push API off (WXREPLY_API_KEY or WXREPLY_API_KEY_FILE)")
	fs.StringVar(&c.webhookSecret, "webhook-secret", c.envSecret(getenv, "webhook-secret", "WXREPLY_WEBHOOK_SECRET"), "the key that signs requests to webhook reply items (WXREPLY_WEBHOOK_SECRET or WXREPLY_WEBHOOK_SECRET_FILE)")
	fs.StringVar(&c.store, "store", envOr(getenv, "WXREPLY_STORE", "data"), "where state is kept: a directory, memory, or redis://host:port/db (WXREPLY_STORE)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", c.envDuration(getenv, "shutdown-timeout", "WXREPLY_SHUTDOWN_TIMEOUT", 25*time.Second), "how long SIGTERM waits for requests and calls under way; the rest stays in the store (WXREPLY_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.maxRetryAge, "max-retry-age", c.envDuration(getenv, "max-retry-age", "WXREPLY_MAX_RETRY_AGE", 6*time.Hour), "how long after acceptance a message is still retried (WXREPLY_MAX_RETRY_AGE)")
	fs.DurationVar(&c.lease, "lease", c.envDuration(getenv, "lease", "WXREPLY_LEASE", 30*time.Second), "how long a message being sent stays an instance's without renewal; another instance on the store takes over a dead one's after it (WXREPLY_LEASE)")
	fs.IntVar(&c.workers, "workers", c.envInt(getenv, "workers", "WXREPLY_WORKERS", 128), "send calls under way at once, over all users (WXREPLY_WORKERS)")
	fs.IntVar(&c.queueSize, "queue-size", c.envInt(getenv, "queue-size", "WXREPLY_QUEUE_SIZE", 0), "ignored: the outbox is bounded by the store, not by memory (WXREPLY_QUEUE_SIZE)")
	fs.BoolVar(&c.typing, "typing", c.envBool(getenv, "typing", "WXREPLY_TYPING"), "send the typing indicator before replies that wait (WXREPLY_TYPING)")
	fs.BoolVar(&c.legacyToken, "legacy-token", c.envBool(getenv, "legacy-token", "WXREPLY_LEGACY_TOKEN"), "fetch tokens from /cgi-bin/token instead of stable_token (WXREPLY_LEGACY_TOKEN)")
	fs.DurationVar(&c.maxClockSkew, "max-clock-skew", c.envDuration(getenv, "max-clock-skew", "WXREPLY_MAX_CLOCK_SKEW", 5*time.Minute), "how far a callback's timestamp may be from this server's clock; 0 turns the check off (WXREPLY_MAX_CLOCK_SKEW)")
	c.allowFrom = c.envNetworks(getenv, "allow-from", "WXREPLY_ALLOW_FROM")
	fs.Var(&c.allowFrom, "allow-from", "comma-separated `networks` (CIDRs or addresses) callbacks may come from; empty: anywhere (WXREPLY_ALLOW_FROM)")
	c.trustedProxies = c.envNetworks(getenv, "trusted-proxies", "WXREPLY_TRUSTED_PROXIES")
	fs.Var(&c.trustedProxies, "trusted-proxies", "comma-separated `networks` of the proxies whose X-Forwarded-For is believed; empty: none (WXREPLY_TRUSTED_PROXIES)")
	fs.Float64Var(&c.apiRate, "api-rate", c.envFloat(getenv, "api-rate", "WXREPLY_API_RATE", 50), "requests a second one client may make to /api/v1, in bursts of twice as many; 0: no limit (WXREPLY_API_RATE)")
	fs.StringVar(&c.logLevel, "log-level", envOr(getenv, "WXREPLY_LOG_LEVEL", "info"), "debug, info, warn or error (WXREPLY_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", envOr(getenv, "WXREPLY_LOG_FORMAT", "json"), "json or text (WXREPLY_LOG_FORMAT)")
	// -h shows each flag's default, here the environment's value: never
	// a secret's.
	for _, name := range []string{"token", "appsecret", "aes-key", "api-key", "webhook-secret"} {
		fs.Lookup(name).DefValue = ""
	}
	return fs
}

// commandFlagSet is the flag set of a command that takes some of serve's
// flags, the ones named: its -h lists only those and its own, and the
// environment's problems with the others are none of its business.
func commandFlagSet(name string, c *config, getenv func(string) string, stderr io.Writer, flags ...string) *flag.FlagSet {
	all := newFlagSet(name, c, getenv, io.Discard)
	fs := flag.NewFlagSet("wxreply "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range flags {
		f := all.Lookup(n)
		fs.Var(f.Value, f.Name, f.Usage)
		fs.Lookup(n).DefValue = f.DefValue // a secret's stays hidden
	}
	for n := range c.envErrs {
		if fs.Lookup(n) == nil {
			delete(c.envErrs, n)
		}
	}
	return fs
}

// envProblem is the first environment problem left after parse, in flag
// order: a value that does not parse, a secret's unreadable _FILE.
func (c *config) envProblem(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err == nil {
			err = c.envErrs[f.Name]
		}
	})
	return err
}

// parse parses args into c and drops the environment errors of the flags
// given, which override those variables.
func (c *config) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { delete(c.envErrs, f.Name) })
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// envDuration is key's duration, def when it is unset.
func (c *config) envDuration(getenv func(string) string, flagName, key string, def time.Duration) time.Duration {
	v := getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErr(flagName, fmt.Errorf("%s=%q is not a duration such as 25s", key, v))
		return def
	}
	return d
}

// envInt is key as a whole number, def when it is unset.
func (c *config) envInt(getenv func(string) string, flagName, key string, def int) int {
	v := getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErr(flagName, fmt.Errorf("%s=%q is not a whole number", key, v))
		return def
	}
	return n
}

// envBool is key as a boolean (true, false, 1, 0 …), false when unset.
func (c *config) envBool(getenv func(string) string, flagName, key string) bool {
	v := getenv(key)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErr(flagName, fmt.Errorf("%s=%q: want true or false", key, v))
	}
	return b
}

// envFloat is key as a number, def when it is unset.
func (c *config) envFloat(getenv func(string) string, flagName, key string, def float64) float64 {
	v := getenv(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		c.envErr(flagName, fmt.Errorf("%s=%q is not a number", key, v))
		return def
	}
	return f
}

// envNetworks is key as a list of networks, none when it is unset.
func (c *config) envNetworks(getenv func(string) string, flagName, key string) networks {
	var n networks
	if err := n.Set(getenv(key)); err != nil {
		c.envErr(flagName, fmt.Errorf("%s: %w", key, err))
	}
	return n
}

// networks is a flag's comma-separated list of CIDRs and addresses.
type networks []netip.Prefix

func (n *networks) String() string {
	s := make([]string, len(*n))
	for i, p := range *n {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (n *networks) Set(v string) error {
	nets, err := handlers.ParseNetworks(v)
	if err != nil {
		return err
	}
	*n = nets
	return nil
}

// maxSecretFile bounds what a _FILE variable may name: a secret is a few
// dozen bytes, and a wrong path (a log, /dev/zero) must not be read whole.
const maxSecretFile = 64 << 10

// envSecret is key's value, or the content of the file that key_FILE
// names (Docker and Kubernetes secrets are mounted as files) with one
// trailing newline trimmed. Its problems never show the value.
func (c *config) envSecret(getenv func(string) string, flagName, key string) string {
	v, path := getenv(key), getenv(key+"_FILE")
	if path == "" {
		return v
	}
	if v != "" {
		c.envErr(flagName, fmt.Errorf("%s and %s_FILE are both set: set one of them", key, key))
		return ""
	}
	s, err := readSecretFile(path)
	if err != nil {
		c.envErr(flagName, fmt.Errorf("%s_FILE: %w", key, err))
		return ""
	}
	return s
}

// readSecretFile is path's content less one trailing "\n" or "\r\n". Its
// errors name the path, never the content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, withoutPath(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return "", fmt.Errorf("%s is a directory, not a file holding the secret", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, withoutPath(err))
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than 64 KiB: not a secret", path)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		s = t
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func (c *config) envErr(flagName string, err error) {
	if c.envErrs == nil {
		c.envErrs = map[string]error{}
	}
	c.envErrs[flagName] = err
}

// validate reports the first configuration problem as one clear line.
// It never repeats a secret's value.
func (c *config) validate() error {
	// Map order is random: report the environment problems in flag order.
	// queue-size is ignored, so a bad value of it is no reason to stop.
	for _, name := range []string{"appsecret", "aes-key", "api-key", "webhook-secret",
		"shutdown-timeout", "max-retry-age", "lease", "workers", "typing", "legacy-token",
		"max-clock-skew", "allow-from", "trusted-proxies", "api-rate"} {
		if err := c.envErrs[name]; err != nil {
			return err
		}
	}
	if c.token == "" {
		return errors.New("WECHAT_TOKEN (or -token) is required: the Token typed into the MP console's server settings")
	}
	if err := checkToken(c.token); err != nil {
		return err
	}
	if c.aesKey != "" {
		if len(c.aesKey) != 43 {
			return fmt.Errorf("WECHAT_ENCODING_AES_KEY must be 43 characters, got %d", len(c.aesKey))
		}
		if _, err := base64.StdEncoding.DecodeString(c.aesKey + "="); err != nil {
			return errors.New("WECHAT_ENCODING_AES_KEY is not valid base64: copy it again from the MP console")
		}
		if c.appID == "" {
			return errors.New("WECHAT_APPID (or -appid) is required with an EncodingAESKey: encrypted messages are checked against it")
		}
	}
	if u, err := url.Parse(c.apiBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("WECHAT_API_BASE %q is not an http or https URL", c.apiBase)
	}
	if err := readableFile(c.rulesPath); err != nil {
		return err
	}
	if c.shutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	if c.workers < 1 || c.workers > 1000 {
		return fmt.Errorf("WXREPLY_WORKERS (or -workers) must be from 1 to 1000, got %d", c.workers)
	}
	if c.maxRetryAge <= 0 {
		return errors.New("WXREPLY_MAX_RETRY_AGE (or -max-retry-age) must be positive")
	}
	if c.lease < time.Second {
		return fmt.Errorf("WXREPLY_LEASE (or -lease) must be at least 1s, got %s", c.lease)
	}
	if c.store == "" {
		return errors.New("WXREPLY_STORE (or -store) must name a directory, memory, or a redis:// URL")
	}
	if c.maxClockSkew < 0 {
		return fmt.Errorf("WXREPLY_MAX_CLOCK_SKEW (or -max-clock-skew) must not be negative, got %s; 0 turns the check off", c.maxClockSkew)
	}
	if r := c.apiRate; r < 0 || r > 1e6 || math.IsNaN(r) {
		return fmt.Errorf("WXREPLY_API_RATE (or -api-rate) must be from 0 (no limit) to 1000000 requests a second, got %v", r)
	}
	return nil
}

// checkToken holds the Token to what the MP console's server settings
// take: 3 to 32 letters and digits. Any other could never match the
// console's, and every callback would be refused. The error never shows
// the Token.
func checkToken(token string) error {
	const want = "WECHAT_TOKEN (or -token) must be 3 to 32 English letters and digits, as the MP console's server settings take it"
	for i, r := range token {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return fmt.Errorf("%s: character %d is not a letter or digit", want, utf8.RuneCountInString(token[:i])+1)
		}
	}
	if n := len(token); n < 3 || n > 32 {
		return fmt.Errorf("%s: it is %d characters long", want, n)
	}
	return nil
}

// readableFile checks that the rules file can be opened and is a file, so
// that a wrong path stops start-up before anything else is wired.
func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("rules file %s is unreadable: %v", path, withoutPath(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("rules file %s is a directory", path)
	}
	return nil
}

// withoutPath is err without the path an *os.PathError repeats: the
// messages that show it name the path already.
func withoutPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	switch c.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want json or text", c.logFormat)
}

// durationsAsText writes a duration as people read it, "25s": the JSON
// handler would write its nanoseconds.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// server is the server's configuration as c sets it.
func (c *config) server(log *slog.Logger) server.Config {
	return server.Config{
		LogBuffer: c.logBuffer,
		Token:     c.token, AppID: c.appID, AppSecret: c.appSecret, AESKey: c.aesKey,
		APIBase: c.apiBase, RulesPath: c.rulesPath, APIKey: c.apiKey, Store: c.store,
		ShutdownTimeout: c.shutdownTimeout, InFlight: c.workers, MaxRetryAge: c.maxRetryAge,
		Lease: c.lease, Typing: c.typing, LegacyToken: c.legacyToken,
		WebhookSecret: c.webhookSecret, MaxClockSkew: clockSkew(c.maxClockSkew),
		AllowFrom: c.allowFrom, TrustedProxies: c.trustedProxies, APIRate: c.apiRate,
		Logger: log,
	}
}

// clockSkew is WXREPLY_MAX_CLOCK_SKEW as server.Config takes it: there the
// zero value is the default, and off is negative.
func clockSkew(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
