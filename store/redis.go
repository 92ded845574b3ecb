package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The shared store: every instance that names the same Redis (and key
// prefix) is one server. Each step of the outbox is one Lua script (see
// redis_scripts.go), so that instances racing on a lane, a mark or a key
// see it before or after, never in between; one user's items wait in a
// list and are handed out one at a time by a lease with a fencing token.
// A lane whose instance died becomes due again when its lease ends: the
// due set holds the lease's end while a lane is claimed, so the next
// Claim of any living instance takes it over.
//
// Accepted means recorded only as far as Redis keeps what it was told:
// with appendonly yes (and appendfsync everysec) a Redis restart loses at
// most the last second; without it, everything since the last snapshot.
// Open warns when the server reports persistence off, or an eviction
// policy that may throw the outbox away.

// quietRedis keeps go-redis's own log lines (a dial that failed, with
// its retries) off stderr: the store reports Redis's state itself, as
// structured lines, once per change.
var quietRedis sync.Once

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// RedisOptions configures OpenRedis.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// (TLS),
	// with go-redis's query options (dial_timeout, pool_size, …) and
	// prefix: the key prefix, "wxreply:" when absent.
	URL string

	// Retention is how long an ended item stays for Status; default
	// DefaultRetention. WindowTTL is the window's length, default 48 h.
	Retention time.Duration
	WindowTTL time.Duration

	// Timeout bounds every call to Redis; default 3 s.
	Timeout time.Duration

	// HealthEvery is how often the health probe writes; default 1 s.
	HealthEvery time.Duration

	Logger *slog.Logger // nil: slog.Default()
}

// DefaultRedisPrefix is the key prefix when the URL names none.
const DefaultRedisPrefix = "wxreply:"

// mediaTTL keeps an upload's record in Redis: WeChat keeps temporary
// media three days. A record lives past its Expires only until then; a
// file whose record went earlier is uploaded again.
const mediaTTL = 73 * time.Hour

// Redis is the Store on Redis, shared by any number of instances.
type Redis struct {
	o      RedisOptions
	log    *slog.Logger
	rdb    *redis.Client
	prefix string
	where  string // the URL without its password, for messages

	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once

	health atomic.Pointer[error] // nil: writable
	warned atomic.Bool           // the persistence check ran
	stats  counters              // a call to Redis counts as a transaction of one operation
}

var _ Store = (*Redis)(nil)

// OpenRedis connects to the Redis of o.URL. An unreachable server is not
// an error: the store reports it through Healthy (callbacks are answered
// 503) and goes on when Redis answers; a bad URL or refused credentials
// are, since they do not mend by themselves.
func OpenRedis(o RedisOptions) (*Redis, error) {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.WindowTTL <= 0 {
		o.WindowTTL = 48 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.HealthEvery <= 0 {
		o.HealthEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	quietRedis.Do(func() { redis.SetLogger(discardRedisLog{}) })
	ro, prefix, where, err := parseRedisURL(o.URL)
	if err != nil {
		return nil, err
	}
	if ro.DialTimeout == 0 || ro.DialTimeout > o.Timeout {
		ro.DialTimeout = o.Timeout
	}
	ro.ReadTimeout, ro.WriteTimeout = o.Timeout, o.Timeout
	ro.ContextTimeoutEnabled = true
	if ro.PoolSize == 0 {
		// Callbacks, the dispatcher and up to WXREPLY_WORKERS sends at
		// once: a pool smaller than that makes them queue for a
		// connection.
		ro.PoolSize = 256
	}
	if ro.DialerRetries == 0 {
		ro.DialerRetries = 1 // a call waits for one dial, not five: the probe tries again
	}
	ro.MaxRetries = -1 // a script is not repeated behind the caller's back: the caller decides
	s := &Redis{
		o: o, log: o.Logger, rdb: redis.NewClient(ro), prefix: prefix, where: where,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	// An unreachable Redis is logged by the probe, once.
	if err := s.probe(ctx); err != nil && refused(err) {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("store %s: %w", where, err)
	}
	go s.housekeep()
	return s, nil
}

// parseRedisURL reads a store URL: go-redis's options, the key prefix,
// and the URL to name in messages, without its password.
func parseRedisURL(raw string) (*redis.Options, string, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the URL, password and all.
		return nil, "", "", errors.New("WXREPLY_STORE: not a valid redis:// URL")
	}
	where := u.Redacted()
	q := u.Query()
	prefix := DefaultRedisPrefix
	if q.Has("prefix") {
		prefix = q.Get("prefix")
		q.Del("prefix")
		u.RawQuery = q.Encode()
		where = u.Redacted()
	}
	ro, err := redis.ParseURL(u.String())
	if err != nil {
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return nil, "", "", fmt.Errorf("WXREPLY_STORE %s: %s", where, msg)
	}
	return ro, prefix, where, nil
}

// refused reports errors that waiting does not mend: credentials, a
// database that does not exist, a server that refuses the commands.
func refused(err error) bool {
	msg := err.Error()
	for _, s := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "DB index is out of range", "ERR unknown command"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// probe writes the health key: the store is healthy when Redis takes a
// write. A read-only replica, a full memory (OOM) or a failing snapshot
// (MISCONF) refuse writes, and so refuse callbacks.
func (s *Redis) probe(ctx context.Context) error {
	err := s.rdb.Set(ctx, s.prefix+"health", time.Now().UnixMilli(), time.Minute).Err()
	if err != nil {
		e := fmt.Errorf("store %s: %w", s.where, err)
		if s.health.Swap(&e) == nil {
			s.log.Error("store cannot be written: callbacks are answered 503 until it can", "store", s.where, "error", err.Error())
		}
		return err
	}
	if s.health.Swap(nil) != nil {
		s.log.Info("store writable again", "store", s.where)
	}
	if !s.warned.Swap(true) {
		s.checkPersistence(ctx)
	}
	return nil
}

// housekeep runs the health probe until Close.
func (s *Redis) housekeep() {
	defer close(s.done)
	t := time.NewTicker(s.o.HealthEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
			_ = s.probe(ctx)
			cancel()
		}
	}
}

// checkPersistence warns when Redis would lose accepted replies at its
// own restart, or may evict them.
func (s *Redis) checkPersistence(ctx context.Context) {
	info, err := s.rdb.Info(ctx, "persistence", "memory").Result()
	if err != nil {
		s.log.Warn("store: cannot read Redis's persistence settings", "store", s.where, "error", err.Error())
		return
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if fields["aof_enabled"] != "1" {
		s.log.Warn("store: Redis runs without appendonly: a Redis restart loses the replies accepted since its last snapshot; set appendonly yes",
			"store", s.where, "aof_enabled", fields["aof_enabled"])
	}
	if p := fields["maxmemory_policy"]; p != "" && p != "noeviction" {
		s.log.Warn("store: Redis may evict keys when its memory is full, the outbox among them; set maxmemory-policy noeviction",
			"store", s.where, "maxmemory_policy", p)
	}
}

// Close stops the health probe and closes the connections.
func (s *Redis) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		err = s.rdb.Close()
	})
	return err
}

// Healthy is nil while Redis takes writes.
func (s *Redis) Healthy() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if p := s.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats reports the store's calls to Redis as its transactions.
func (s *Redis) Stats() Stats { return s.stats.snapshot() }

// call runs fn against Redis within the store's timeout, counting it; a
// failure that is Redis's (not a lost lease or a conflict) makes the
// store unhealthy until the next probe writes.
func (s *Redis) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	s.stats.commit(1, time.Since(start))
	if err == nil || errors.Is(err, redis.Nil) || logical(err) || errors.Is(err, errItemIDTaken) {
		return err
	}
	s.stats.failed.Add(1)
	if s.closed.Load() {
		return ErrClosed
	}
	e := fmt.Errorf("store %s: %w", s.where, err)
	if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if s.health.Swap(&e) == nil {
			s.log.Error("store cannot be written: callbacks are answered 503 until it can", "store", s.where, "error", err.Error())
		}
	}
	return e
}

// errItemIDTaken: an item ID was used before (the caller's mistake).
var errItemIDTaken = errors.New("store: item ID already used")

func msArg(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// Accept records b in one script.
func (s *Redis) Accept(ctx context.Context, b *Batch) (Accepted, error) {
	args := make([]any, 0, 19+6*len(b.Items))
	var idemIDs string
	if b.IdemKey != "" {
		ids := make([]string, len(b.Items))
		for i, it := range b.Items {
			ids[i] = it.ID
		}
		idemIDs = joinIDs(ids)
	}
	args = append(args, s.prefix, ms(b.Now), b.Dedupe, msArg(b.DedupeTTL), b.Answer,
		b.IdemKey, b.IdemFingerprint, msArg(b.IdemTTL), idemIDs,
		b.Touch, touchGrain.Milliseconds(), msArg(s.o.WindowTTL),
		b.Query, b.QueryBody, msArg(b.QueryTTL))
	var setOpenID, setName string
	var setTTL time.Duration
	if st := b.SetState; st != nil {
		setOpenID, setName, setTTL = st.OpenID, st.Name, st.TTL
	}
	args = append(args, b.ClearState, setOpenID, setName, msArg(setTTL))
	for _, it := range b.Items {
		args = append(args, it.ID, it.OpenID, it.MsgType, it.Rule, it.InMsgID, it.Payload)
	}
	var res Accepted
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := acceptScript.Run(ctx, s.rdb, nil, args...).StringSlice()
		if err != nil {
			return err
		}
		switch v[0] {
		case "ok":
			ids := make([]string, len(b.Items))
			for i, it := range b.Items {
				ids[i] = it.ID
			}
			res = Accepted{IDs: ids, Answer: b.Answer}
		case "conflict":
			return ErrIdempotencyConflict
		case "idem":
			res = Accepted{IDs: splitIDs(v[1]), Duplicate: true}
		case "mark":
			var answer []byte
			if v[1] != "" { // no passive reply is kept as ""
				answer = []byte(v[1])
			}
			res = Accepted{Answer: answer, Duplicate: true}
		case "reused":
			return ErrQueryReused
		case "taken":
			return fmt.Errorf("%w: %q", errItemIDTaken, v[1])
		}
		return nil
	})
	if err != nil {
		return Accepted{}, err
	}
	return res, nil
}

// Claim leases up to max due lanes in one script.
func (s *Redis) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Claim, time.Time, error) {
	var claims []Claim
	var next time.Time
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := claimScript.Run(ctx, s.rdb, nil, s.prefix, ms(now), max, msArg(lease)).Slice()
		if err != nil {
			return err
		}
		next = fromMS(toInt(v[0]))
		const per = 14 // see claimScript
		for i := 1; i+per <= len(v); i += per {
			f := v[i : i+per]
			var c Claim
			it := &c.Item
			it.OpenID, c.Token, it.ID = toStr(f[0]), toInt(f[1]), toStr(f[2])
			it.Seq, it.MsgType, it.Rule, it.InMsgID = toInt(f[3]), toStr(f[4]), toStr(f[5]), toStr(f[6])
			it.Attempts, it.LastError = int(toInt(f[7])), toStr(f[8])
			it.Created, it.NextAt = fromMS(toInt(f[9])), fromMS(toInt(f[10]))
			it.Payload = []byte(toStr(f[11]))
			if last := toStr(f[12]); last != "" {
				c.Window = Window{Known: true, Last: fromMS(toInt(f[12])), Closed: toStr(f[13]) == "1"}
			}
			claims = append(claims, c)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return claims, next, nil
}

func toStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func claimArgs(s *Redis, c Claim) []any {
	return []any{s.prefix, c.Item.OpenID, c.Item.ID, c.Token}
}

// Complete ends a claimed item.
func (s *Redis) Complete(ctx context.Context, c Claim, f Final) (Status, error) {
	state := 1
	if !f.Delivered {
		state = 2
	}
	args := append(claimArgs(s, c), state, f.Reason, f.ErrCode, f.Attempts, f.MsgID, f.LastError, ms(f.Now), msArg(s.o.Retention))
	var ts string
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := completeScript.Run(ctx, s.rdb, nil, args...).StringSlice()
		if err != nil {
			return err
		}
		if v[0] != "ok" {
			return ErrLeaseLost
		}
		ts = v[1]
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	it := c.Item
	return Status{ID: it.ID, State: [...]string{StateQueued, StateDelivered, StateFailed}[state], Reason: f.Reason,
		ErrCode: f.ErrCode, Attempts: f.Attempts, OpenID: it.OpenID, Rule: it.Rule, InMsgID: it.InMsgID,
		MsgType: it.MsgType, MsgID: f.MsgID, TemplateStatus: ts, LastError: f.LastError,
		Created: it.Created, Updated: fromMS(ms(f.Now))}, nil
}

// Retry parks a claimed item until r.At.
func (s *Redis) Retry(ctx context.Context, c Claim, r Retry) error {
	args := append(claimArgs(s, c), r.Attempts, r.LastError, ms(r.At), ms(r.Now))
	return s.call(ctx, func(ctx context.Context) error {
		n, err := retryScript.Run(ctx, s.rdb, nil, args...).Int()
		if err == nil && n == 0 {
			err = ErrLeaseLost
		}
		return err
	})
}

// Release gives a claimed item back, due at now.
func (s *Redis) Release(ctx context.Context, c Claim, now time.Time) error {
	args := append(claimArgs(s, c), ms(now))
	return s.call(ctx, func(ctx context.Context) error {
		n, err := releaseScript.Run(ctx, s.rdb, nil, args...).Int()
		if err == nil && n == 0 {
			err = ErrLeaseLost
		}
		return err
	})
}

// Extend renews the leases of the claims still held.
func (s *Redis) Extend(ctx context.Context, claims []Claim, until time.Time) ([]string, error) {
	args := make([]any, 0, 2+3*len(claims))
	args = append(args, s.prefix, ms(until))
	for _, c := range claims {
		args = append(args, c.Item.OpenID, c.Item.ID, c.Token)
	}
	var lost []string
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		lost, err = extendScript.Run(ctx, s.rdb, nil, args...).StringSlice()
		return err
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// statusFrom reads an item hash (field, value pairs) as a Status.
func statusFrom(id string, kv []string) Status {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	state := min(max(int(num("state")), 0), 2)
	st := Status{ID: id, State: [...]string{StateQueued, StateDelivered, StateFailed}[state],
		Reason: m["reason"], ErrCode: int(num("errcode")), Attempts: int(num("attempts")), OpenID: m["openid"],
		Rule: m["rule"], InMsgID: m["in"], MsgType: m["msgtype"], MsgID: num("msgid"), TemplateStatus: m["tstatus"],
		LastError: m["last_error"], Created: fromMS(num("created")), Updated: fromMS(num("updated"))}
	if state == 0 {
		st.NextAt = fromMS(num("next"))
	}
	return st
}

// Status reports on an item by ID.
func (s *Redis) Status(ctx context.Context, id string) (Status, bool, error) {
	var st Status
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		m, err := s.rdb.HGetAll(ctx, s.prefix+"item:"+id).Result()
		if err != nil || len(m) == 0 {
			return err
		}
		kv := make([]string, 0, 2*len(m))
		for k, v := range m {
			kv = append(kv, k, v)
		}
		st, ok = statusFrom(id, kv), true
		return nil
	})
	if err != nil {
		return Status{}, false, err
	}
	return st, ok, nil
}

// Window reports on openid's window.
func (s *Redis) Window(ctx context.Context, openid string) (Window, error) {
	var w Window
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := s.rdb.HMGet(ctx, s.prefix+"win:"+openid, "last", "closed").Result()
		if err != nil || v[0] == nil {
			return err
		}
		w = Window{Known: true, Last: fromMS(toInt(v[0])), Closed: toStr(v[1]) == "1"}
		return nil
	})
	if err != nil {
		return Window{}, err
	}
	return w, nil
}

// State returns openid's conversation state unexpired at now: one GET.
func (s *Redis) State(ctx context.Context, openid string, now time.Time) (string, bool, error) {
	var name string
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := s.rdb.Get(ctx, s.prefix+"st:"+openid).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) {
				return nil
			}
			return err
		}
		exp, rest, found := strings.Cut(v, ":")
		if n, perr := strconv.ParseInt(exp, 10, 64); found && perr == nil && n > ms(now) {
			name, ok = rest, true
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	return name, ok, nil
}

// CloseWindow records a 45015 answered to a call made at asked.
func (s *Redis) CloseWindow(ctx context.Context, openid string, asked, _ time.Time) error {
	return s.call(ctx, func(ctx context.Context) error {
		return closeWindowScript.Run(ctx, s.rdb, nil, s.prefix, openid, ms(asked), msArg(s.o.WindowTTL)).Err()
	})
}

// Pause stops claims until until.
func (s *Redis) Pause(ctx context.Context, until time.Time) error {
	return s.call(ctx, func(ctx context.Context) error {
		return pauseScript.Run(ctx, s.rdb, nil, s.prefix, ms(until)).Err()
	})
}

// TemplateFinished records a template delivery report.
func (s *Redis) TemplateFinished(ctx context.Context, msgid int64, status string, now time.Time) (Status, bool, error) {
	var st Status
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := templateScript.Run(ctx, s.rdb, nil, s.prefix, msgid, status, ms(now), earlyTemplateTTL.Milliseconds()).StringSlice()
		if err != nil || len(v) == 0 {
			return err
		}
		st, ok = statusFrom(v[0], v[1:]), true
		return nil
	})
	if err != nil {
		return Status{}, false, err
	}
	return st, ok, nil
}

// Pending counts the waiting items.
func (s *Redis) Pending(ctx context.Context) (int, error) {
	var n int
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := s.rdb.Get(ctx, s.prefix+"pending").Int()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		n = v
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Media returns an upload recorded for key, unexpired at now.
func (s *Redis) Media(ctx context.Context, key string, now time.Time) (Media, bool, error) {
	var m Media
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := s.rdb.HMGet(ctx, s.prefix+"media:"+key, "id", "size", "mod", "exp").Result()
		if err != nil || v[0] == nil {
			return err
		}
		exp := toInt(v[3])
		if exp <= ms(now) {
			return nil
		}
		m = Media{ID: toStr(v[0]), Size: toInt(v[1]), ModTime: time.Unix(0, toInt(v[2])), Expires: fromMS(exp)}
		ok = true
		return nil
	})
	if err != nil {
		return Media{}, false, err
	}
	return m, ok, nil
}

// PutMedia records an upload under key.
func (s *Redis) PutMedia(ctx context.Context, key string, m Media) error {
	return s.call(ctx, func(ctx context.Context) error {
		k := s.prefix + "media:" + key
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, k, "id", m.ID, "size", m.Size, "mod", m.ModTime.UnixNano(), "exp", ms(m.Expires))
			p.PExpire(ctx, k, mediaTTL)
			return nil
		})
		return err
	})
}

// DeleteMedia forgets the upload under key.
func (s *Redis) DeleteMedia(ctx context.Context, key string) error {
	return s.call(ctx, func(ctx context.Context) error {
		return s.rdb.Del(ctx, s.prefix+"media:"+key).Err()
	})
}

// The shared access token (wechat.TokenStore): one fetch for every
// instance.

// SharedToken returns the token kept and how long it is still to be used.
func (s *Redis) SharedToken(ctx context.Context) (string, time.Duration, bool, error) {
	var tok string
	var ttl time.Duration
	err := s.call(ctx, func(ctx context.Context) error {
		v, err := sharedTokenScript.Run(ctx, s.rdb, nil, s.prefix).Slice()
		if err != nil || len(v) < 2 {
			return err
		}
		tok, ttl = toStr(v[0]), time.Duration(toInt(v[1]))*time.Millisecond
		return nil
	})
	if err != nil {
		return "", 0, false, err
	}
	if tok == "" || ttl <= 0 {
		return "", 0, false, nil
	}
	return tok, ttl, true, nil
}

// LockTokenFetch takes the fetch lock for at most hold.
func (s *Redis) LockTokenFetch(ctx context.Context, hold time.Duration) (func(), bool, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	val := hex.EncodeToString(b[:])
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.rdb.SetNX(ctx, s.prefix+"token:lock", val, hold).Result()
		return err
	})
	if err != nil || !ok {
		return func() {}, false, err
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		defer cancel()
		_ = s.call(ctx, func(ctx context.Context) error {
			return unlockTokenScript.Run(ctx, s.rdb, nil, s.prefix, val).Err()
		})
	}
	return unlock, true, nil
}

// PutSharedToken keeps tok for ttl.
func (s *Redis) PutSharedToken(ctx context.Context, tok string, ttl time.Duration) error {
	return s.call(ctx, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.prefix+"token", tok, max(ttl, time.Millisecond)).Err()
	})
}

// DropSharedToken forgets tok if it is still the token kept.
func (s *Redis) DropSharedToken(ctx context.Context, tok string) error {
	return s.call(ctx, func(ctx context.Context) error {
		return dropTokenScript.Run(ctx, s.rdb, nil, s.prefix, tok).Err()
	})
}
