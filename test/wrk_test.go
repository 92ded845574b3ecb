package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// requireWrk skips t unless WXREPLY_WRK is set and wrk is installed,
// and returns wrkScript written to a file for wrk -s. what names the
// load test in the skip message.
func requireWrk(t *testing.T, what string) string {
	t.Helper()
	if os.Getenv("WXREPLY_WRK") == "" {
		t.Skip("set WXREPLY_WRK=1 to run the wrk load test on " + what)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed (apt-get install wrk)")
	}
	script := filepath.Join(t.TempDir(), "callback.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	non2xx   int
	requests int // requests completed
}

func parseWrk(t *testing.T, out string) wrkResult {
	t.Helper()
	var r wrkResult
	if m := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	} else {
		t.Fatalf("no Requests/sec in wrk output:\n%s", out)
	}
	lat := func(p string) time.Duration {
		m := regexp.MustCompile(`\s` + p + `%\s+([\d.]+)(us|ms|s)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s%% latency in wrk output:\n%s", p, out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
		return time.Duration(v * float64(unit)).Round(time.Microsecond)
	}
	r.p50, r.p99 = lat("50"), lat("99")
	if m := regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`).FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`(\d+) requests in `).FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	} else {
		t.Fatalf("no request count in wrk output:\n%s", out)
	}
	return r
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// wrkQueryFiles numbers the files of signed queries, so that no two
// hold the same nonce.
var wrkQueryFiles atomic.Int64

// wrkQueries writes the signed query strings (signature, timestamp and
// nonce) of a run of up to seconds, one a line, for wrkScript: one signed
// query serves one body, so each request of a run needs its own, as each
// of WeChat's callbacks has. Block k of wrkQueriesPerSecond lines is
// signed at the returned second plus k, and wrkScript takes a request's
// query from the block of the second it is sent in: WeChat signs each
// callback when it sends it, so a run's timestamps advance with the clock
// as WeChat's do. The nonces are unique across the files of this test
// binary, so runs against one server never share a query.
//
// Every line has the same length, so that the script reads a block where
// it starts instead of holding the file: wrk with the 1.6 million lines
// of a 10 s run in a Lua table gave every server, the minimal handler
// included, a p99 of 30-100 ms that was wrk's own (1.5 million: 5 ms).
func wrkQueries(t testing.TB, seconds int) (path string, signed int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "queries.txt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	signed = time.Now().Unix()
	prefix := strconv.FormatInt(wrkQueryFiles.Add(1), 10) + "0"
	width := 0
	for i := range seconds * wrkQueriesPerSecond {
		ts := strconv.FormatInt(signed+int64(i/wrkQueriesPerSecond), 10)
		nonce := fmt.Sprintf("%s%010d", prefix, i)
		line := "signature=" + wechat.Signature(testToken, ts, nonce) + "&timestamp=" + ts + "&nonce=" + nonce + "\n"
		if width == 0 {
			width = len(line)
		} else if len(line) != width {
			t.Fatalf("query line %d is %d bytes, the first %d: wrkScript needs lines of one length", i, len(line), width)
		}
		w.WriteString(line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The servers measured may share this process: the collection of
	// the garbage made here is not theirs to pay for during the run.
	runtime.GC()
	return path, signed
}

// wrkQueriesPerSecond is how many signed queries runWrk prepares for
// each second of a run: well above what one wrk thread gets from any
// handler here on the machines this runs on.
const wrkQueriesPerSecond = 100_000

// runWrk runs wrk with wrkScript (one thread, conns connections, for
// duration) against base's /wechat, each request with a signed query of
// its own, and the run's MsgIds from msgBase on. It fails the test when
// the run outran the queries prepared: the requests beyond them would
// reuse a query and be refused.
func runWrk(t *testing.T, script, base string, conns int, duration string, msgBase int) (wrkResult, error) {
	t.Helper()
	return runWrkBody(t, script, base, conns, duration, msgBase, "text")
}

// runWrkBody is runWrk with the body of kind: "text" (the message "hi",
// which the sample's greeting rule answers) or "location" (a LOCATION
// event, which no rule of the sample answers).
func runWrkBody(t *testing.T, script, base string, conns int, duration string, msgBase int, kind string) (wrkResult, error) {
	t.Helper()
	d, err := time.ParseDuration(duration)
	if err != nil {
		return wrkResult{}, fmt.Errorf("WXREPLY_WRK_DURATION %q: %w", duration, err)
	}
	// The seconds of the run, and of writing the file and wrk's reading
	// it before the run starts.
	queries, signed := wrkQueries(t, int(d.Seconds())+6)
	out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(conns), "-d"+duration, "--latency", "-s", script,
		base+"/wechat", "--", strconv.Itoa(msgBase), queries, kind, strconv.FormatInt(signed, 10), strconv.Itoa(wrkQueriesPerSecond)).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	r := parseWrk(t, string(out))
	if float64(r.requests) > 0.8*d.Seconds()*wrkQueriesPerSecond {
		t.Errorf("wrk made %d requests in %v, close to the %d signed queries prepared for each second: raise wrkQueriesPerSecond", r.requests, d, wrkQueriesPerSecond)
	}
	return r, nil
}

// wrkScript posts a text message "hi" (the sample's greeting rule) with a
// fresh MsgId each time, so no request is dropped as a retry, or a
// LOCATION event (which no rule answers) with a fresh CreateTime, and a
// signed query of its own: wrk -s SCRIPT URL -- BASE QUERIES KIND SIGNED
// PER, where a run's MsgIds start at BASE, so that runs against one
// server are not retries of each other, QUERIES is the file of
// wrkQueries, whose block k of PER lines is signed at SIGNED+k, and KIND
// is text or location. A request sent in second SIGNED+k takes the next
// query of block k. It is meant for one thread (-t1).
var wrkScript = fmt.Sprintf(`
local counter = 0
local thread_id = 0
local base = 0
local queries = nil -- the file of wrkQueries, read a block at a time
local width = 0 -- the length of its lines
local blocks = 0
local kind = "text"
local signed = 0
local per = 0
local second = -1
local in_second = 0
local query = ""
init = function(args)
  base = tonumber(args[1] or "0")
  kind = args[3] or "text"
  signed = tonumber(args[4])
  per = tonumber(args[5])
  queries = assert(io.open(args[2], "rb"))
  queries:setvbuf("full", 65536)
  width = #queries:read("*l") + 1
  blocks = math.floor(queries:seek("end") / width / per)
end
setup = function(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local id = base + (tid or 0) * 100000000 + counter
  -- The next query signed at this second. Past its block, or past the
  -- file, queries are used again: those requests are refused (403).
  local now = os.time() - signed
  if now ~= second then
    second, in_second = now, 0
    queries:seek("set", (now %% blocks) * per * width)
  end
  in_second = in_second + 1
  if in_second <= per then
    query = queries:read("*l")
  end
  local body
  if kind == "location" then
    body = "<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oWRK_user_" .. (counter %% 500) ..
      "]]></FromUserName><CreateTime>" .. id .. "</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event>" ..
      "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>"
  else
    body = "<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oWRK_user_" .. (counter %% 500) ..
      "]]></FromUserName><CreateTime>" .. os.time() .. "</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>" ..
      id .. "</MsgId></xml>"
  end
  return wrk.format("POST", "/wechat?" .. query, {["Content-Type"] = "text/xml"}, body)
end
`)
