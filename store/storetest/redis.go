package storetest

// Redis for tests: one shared server per test binary (RedisURL, with a key
// prefix per test from RedisPrefix) and private servers that a test may
// kill and start again (StartRedis).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisEnv names the environment variable that points the tests at a
// running Redis (a URL such as redis://127.0.0.1:6391/0) instead of one
// they start themselves. CI sets it.
const RedisEnv = "WXREPLY_TEST_REDIS"

const (
	// redisReadyTimeout bounds how long a server may take to answer PING
	// after it starts, or to exit after it is told to.
	redisReadyTimeout = 10 * time.Second
	// redisPollInterval is how often readiness and exit are checked.
	redisPollInterval = 20 * time.Millisecond
	// redisStartTries is how often a server is started on a new port when
	// the one picked was taken in between.
	redisStartTries = 3
	// redisLogTail is how much of a server's output a failure shows.
	redisLogTail = 4 << 10
)

// The shared server, started once per test binary.
var shared struct {
	once sync.Once
	url  string
	skip string // set when redis-server is missing and tests may skip
	err  error
}

// RedisURL is the URL of the Redis shared by every test of the test
// binary. Tests on it must keep to keys under their own RedisPrefix and
// never flush it; a test that needs a server to itself uses StartRedis.
//
// When WXREPLY_TEST_REDIS is set, it is that URL, checked once with a
// PING. Otherwise the first call starts a redis-server on a free loopback
// port. That server runs until the test binary exits: there is no TestMain
// to stop it in, starting one per test would cost a start each, and the
// kernel stops it when the binary exits (on Linux; see setParentDeathSignal).
//
// Without redis-server on PATH the test is skipped, except under CI=true,
// where it fails: CI must never pass by skipping.
func RedisURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv(RedisEnv); u != "" {
			shared.url, shared.err = u, pingURL(u, 2*time.Second)
			if shared.err != nil {
				shared.err = fmt.Errorf("%s=%s: %w", RedisEnv, u, shared.err)
			}
			return
		}
		bin, msg := lookRedisServer()
		if bin == "" {
			shared.skip = msg
			return
		}
		shared.url, shared.err = startShared(bin)
	})
	if shared.skip != "" {
		skipOrFail(t, shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("shared Redis for tests: %v", shared.err)
	}
	return shared.url
}

// startShared starts the shared server in a directory of its own under
// the system's temporary directory, after removing those left by test
// binaries that have exited.
func startShared(bin string) (string, error) {
	sweepSharedDirs()
	dir, err := os.MkdirTemp("", sharedDirPrefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, sharedOwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", err
	}
	// The server is not kept: it runs until the test binary exits.
	_, port, err := startFreePort(bin, dir, RedisServerOptions{})
	if err != nil {
		return "", err
	}
	return redisURL(port, ""), nil
}

const (
	sharedDirPrefix = "wxreply-redis-"
	sharedOwnerFile = "owner.pid"
)

// sweepSharedDirs removes the shared servers' directories whose test
// binary (named in owner.pid) no longer runs.
func sweepSharedDirs() {
	if runtime.GOOS == "windows" {
		return // no signal 0 to ask whether a process runs
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), sharedDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, sharedOwnerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processRuns(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

func processRuns(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// RedisPrefix is a key prefix of its own for each call, such as
// "test:TestRedisAccept_Lease:3f9a1c0b2e4d:", so that tests sharing one
// server never see each other's keys. It holds no glob characters, so it
// can be used in SCAN MATCH as it is.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("RedisPrefix: %v", err)
	}
	name := []byte(t.Name())
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == '/'
		if !ok {
			name[i] = '_'
		}
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return "test:" + string(name) + ":" + hex.EncodeToString(b[:]) + ":"
}

// CleanupRedisPrefix registers a cleanup that deletes every key under
// prefix on the server at url (SCAN and DEL), so that a test leaves the
// shared server as it found it.
func CleanupRedisPrefix(t testing.TB, url, prefix string) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("CleanupRedisPrefix: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), redisReadyTimeout)
		defer cancel()
		c := redis.NewClient(opt)
		defer c.Close()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("deleting keys under %q: SCAN: %v", prefix, err)
			return
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
				t.Errorf("deleting keys under %q: DEL: %v", prefix, err)
				return
			}
			keys = keys[n:]
		}
	})
}

// RedisServerOptions configure a server from StartRedis. The zero value is
// what wxreply runs on: the append-only file on, no password.
type RedisServerOptions struct {
	// NoAppendOnly turns the append-only file off: with no RDB snapshots
	// either, the server then forgets everything when it exits.
	NoAppendOnly bool
	// Password, if set, is required of clients (--requirepass); URL
	// carries it.
	Password string
	// Args are more redis-server arguments, after the others, such as
	// "--appendfsync", "always".
	Args []string
}

// RedisServer is a redis-server owned by one test, for tests that kill
// Redis and start it again. It keeps its port and its directory across
// restarts, so a client reconnects to the same URL and the append-only
// file is replayed. Its methods fail the test and must be called from the
// test's goroutine; the test's cleanup kills the server.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	o    RedisServerOptions
	p    *redisProc // nil while stopped
}

// StartRedis starts a private redis-server on a free loopback port and
// waits until it answers PING. Without redis-server on PATH the test is
// skipped, or fails under CI=true.
func StartRedis(t testing.TB, o RedisServerOptions) *RedisServer {
	t.Helper()
	bin, msg := lookRedisServer()
	if bin == "" {
		skipOrFail(t, msg)
	}
	s := &RedisServer{t: t, bin: bin, dir: t.TempDir(), o: o}
	// Registered after TempDir, so it runs first: the server exits before
	// its directory is removed.
	t.Cleanup(func() {
		if s.p != nil {
			s.p.kill()
			s.p = nil
		}
	})
	p, port, err := startFreePort(bin, s.dir, o)
	if err != nil {
		t.Fatalf("StartRedis: %v", err)
	}
	s.p, s.port = p, port
	return s
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is the server's URL, redis://127.0.0.1:PORT/0, with the password
// if there is one.
func (s *RedisServer) URL() string { return redisURL(s.port, s.o.Password) }

// Kill kills the server with SIGKILL, as a crash would, and waits until it
// has exited. Kill on a stopped server does nothing.
//
// A process's crash keeps what Redis wrote to its append-only file (the
// kernel has it, fsynced or not), and Redis writes before it answers,
// unless under the default appendfsync everysec an fsync still running on
// a slow disk holds the write back (for up to 2 s). A test that must rule
// that out passes "--appendfsync", "always" in Args.
func (s *RedisServer) Kill() {
	s.t.Helper()
	if s.p == nil {
		return
	}
	if err := s.p.kill(); err != nil {
		s.t.Fatalf("killing redis-server on %s: %v", s.Addr(), err)
	}
	s.p = nil
}

// Stop stops the server as an operator would, with SIGTERM (Redis then
// shuts down as on SHUTDOWN), and waits until it has exited. Stop on a
// stopped server does nothing.
func (s *RedisServer) Stop() {
	s.t.Helper()
	if s.p == nil {
		return
	}
	p := s.p
	s.p = nil
	if err := p.signal(syscall.SIGTERM); err != nil {
		p.kill()
		s.t.Fatalf("stopping redis-server on %s: %v\n%s", s.Addr(), err, p.out.tail())
	}
}

// Start starts the server again after Kill or Stop, on the same port and
// directory, and waits until it answers PING, that is until it has
// replayed its append-only file.
func (s *RedisServer) Start() {
	s.t.Helper()
	if s.p != nil {
		s.t.Fatalf("Start: redis-server on %s is running", s.Addr())
	}
	p, err := startRedisProc(s.bin, s.dir, s.port, s.o)
	if err != nil {
		s.t.Fatalf("starting redis-server again on %s: %v", s.Addr(), err)
	}
	s.p = p
}

// lookRedisServer finds redis-server on PATH, or says why not and how to
// get it.
func lookRedisServer() (bin, msg string) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Sprintf("redis-server not found on PATH (%v): install it (apt-get install redis-server) "+
			"or set %s to a Redis URL", err, RedisEnv)
	}
	return bin, ""
}

// skipOrFail skips the test, or fails it under CI=true.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", msg)
	}
	t.Skip(msg)
}

func redisURL(port int, password string) string {
	u := url.URL{Scheme: "redis", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/0"}
	if password != "" {
		u.User = url.UserPassword("", password)
	}
	return u.String()
}

// pingURL connects to the Redis at u and PINGs it within timeout.
func pingURL(u string, timeout time.Duration) error {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.MaxRetries, opt.DialerRetries = -1, 1
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	return nil
}

// startFreePort starts a server on a free port: it picks one by listening
// on port 0 and closing, and tries again if another process took it in
// between.
func startFreePort(bin, dir string, o RedisServerOptions) (*redisProc, int, error) {
	var err error
	for range redisStartTries {
		var port int
		port, err = freePort()
		if err != nil {
			return nil, 0, err
		}
		var p *redisProc
		p, err = startRedisProc(bin, dir, port, o)
		if err == nil {
			return p, port, nil
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, 0, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errAddrInUse = errors.New("address already in use")

// redisProc is one run of redis-server.
type redisProc struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
}

// startRedisProc runs redis-server on port with dir as its directory and
// waits until it answers PING, fails to start, or redisReadyTimeout
// passes.
func startRedisProc(bin, dir string, port int, o RedisServerOptions) (*redisProc, error) {
	aof := "yes"
	if o.NoAppendOnly {
		aof = "no"
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", aof, "--daemonize", "no",
	}
	if o.Password != "" {
		args = append(args, "--requirepass", o.Password)
	}
	args = append(args, o.Args...)

	p := &redisProc{out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// A child Redis forks to rewrite its file keeps the output pipe open;
	// Wait must not wait for it after the server itself has exited.
	p.cmd.WaitDelay = time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{}
	setParentDeathSignal(p.cmd.SysProcAttr)

	// The kernel sends the parent-death signal when the thread that
	// started the process exits, not the process: start it from a locked
	// thread that lives until the server exits.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}

	u := redisURL(port, o.Password)
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		// A TCP connect first: go-redis logs every dial that fails.
		err := dialOnce(port)
		if err == nil {
			err = pingURL(u, 500*time.Millisecond)
		}
		if err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			msg := p.out.tail()
			if strings.Contains(msg, "Address already in use") {
				return nil, fmt.Errorf("port %d: %w", port, errAddrInUse)
			}
			return nil, fmt.Errorf("redis-server on port %d exited (%v) before answering PING:\n%s",
				port, p.cmd.ProcessState, msg)
		default:
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING within %v (last: %v):\n%s",
				port, redisReadyTimeout, err, p.out.tail())
		}
		time.Sleep(redisPollInterval)
	}
}

func dialOnce(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return err
	}
	return c.Close()
}

// kill sends SIGKILL and waits until the process has exited.
func (p *redisProc) kill() error { return p.signal(syscall.SIGKILL) }

// signal sends sig and waits until the process has exited, for at most
// redisReadyTimeout.
func (p *redisProc) signal(sig os.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(redisReadyTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("still running %v after %v; killed", redisReadyTimeout, sig)
	}
}

// tailBuffer keeps the last max bytes written to it; a server writes to
// it from exec's copying goroutine while a test may read it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if len(b.b) > b.max {
		b.b = append(b.b[:0], b.b[len(b.b)-b.max:]...)
	}
	return len(p), nil
}

// tail is the last redisLogTail bytes of output, from a line's start.
func (b *tailBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.b
	if len(t) > redisLogTail {
		t = t[len(t)-redisLogTail:]
		if i := bytes.IndexByte(t, '\n'); i >= 0 {
			t = t[i+1:]
		}
	}
	return string(t)
}
