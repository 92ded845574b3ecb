package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Who may call, and how often: the client address behind trusted proxies,
// the networks callbacks may come from (WXREPLY_ALLOW_FROM) and the
// per-client rate of the push API (WXREPLY_API_RATE). Both refuse before
// the request log and log at most one line a minute: an outsider sending
// at full speed costs a counter, not a log line a request.

const (
	callbackPath = "/wechat"
	apiPrefix    = "/api/v1"

	// maxAPIClients bounds the rate limiter's memory: beyond it, new
	// clients share one limit until idle ones are dropped.
	maxAPIClients = 10_000
	// apiClientIdle is how long a client is kept after its last request
	// (longer when its burst takes longer to come back).
	apiClientIdle = time.Minute
	// refusalLogEvery spaces the log lines about refused requests.
	refusalLogEvery = time.Minute
)

// ParseNetworks parses a comma-separated list of networks in CIDR
// notation ("10.0.0.0/8", "2001:db8::/32") and single addresses
// ("203.0.113.7"), as WXREPLY_ALLOW_FROM and WXREPLY_TRUSTED_PROXIES take
// them. Spaces around items and empty items are ignored; "" is nil.
func ParseNetworks(list string) ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("%q is not a network such as 10.0.0.0/8 or 2001:db8::/32", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address or a network such as 10.0.0.0/8", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		// Client addresses are compared unmapped: ::ffff:10.0.0.0/104
		// is 10.0.0.0/8.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		nets = append(nets, p.Masked())
	}
	return nets, nil
}

func containsAddr(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddrs finds the address a request comes from: the TCP peer,
// unless the peer is a trusted proxy. Then X-Forwarded-For is read from
// the right, each trusted proxy's entry skipped, and the first address
// not trusted is the client: the entries left of it were written by
// whoever the client is, and prove nothing.
type clientAddrs struct {
	trusted []netip.Prefix // WXREPLY_TRUSTED_PROXIES; none: the peer is the client
}

// of is r's client address; invalid when a trusted proxy forwarded an
// entry that is not an address, since nothing left of it can be believed.
func (ca clientAddrs) of(r *http.Request) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() || !containsAddr(ca.trusted, peer) {
		return peer
	}
	client := peer
	lines := r.Header.Values(echo.HeaderXForwardedFor)
	for i := len(lines) - 1; i >= 0; i-- {
		for xff := lines[i]; xff != ""; {
			var item string
			if comma := strings.LastIndexByte(xff, ','); comma >= 0 {
				item, xff = xff[comma+1:], xff[:comma]
			} else {
				item, xff = xff, ""
			}
			a := parseAddr(strings.TrimSpace(item))
			if !a.IsValid() || !containsAddr(ca.trusted, a) {
				return a
			}
			client = a
		}
	}
	// Every hop was trusted (a probe from the proxy itself): the leftmost.
	return client
}

// realIP is Echo's IPExtractor, so that c.RealIP() and the request log's
// remote_ip name the client the allow-list and the rate limit see, not
// whatever a client wrote into X-Forwarded-For.
func (ca clientAddrs) realIP(r *http.Request) string {
	if a := ca.of(r); a.IsValid() {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// parseAddr reads "1.2.3.4", "2001:db8::1", "[2001:db8::1]" and the same
// with a port; IPv4-mapped IPv6 addresses are their IPv4 address, and
// zones are dropped. Anything else is the invalid Addr.
func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

// sampled lets one event a period have its log line and counts the rest.
type sampled struct {
	mu      sync.Mutex
	next    time.Time
	skipped int
}

// take reports whether the event at now gets a line, and how many events
// went without one since the last line.
func (s *sampled) take(now time.Time) (skipped int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.skipped++
		return 0, false
	}
	skipped, s.skipped = s.skipped, 0
	s.next = now.Add(refusalLogEvery)
	return skipped, true
}

// accessControl is the allow-list and the rate limit that cfg turns on,
// in the order they run; their metrics go to cfg.Metrics.
func accessControl(cfg Config, addrs clientAddrs) []echo.MiddlewareFunc {
	var mws []echo.MiddlewareFunc
	if len(cfg.AllowFrom) > 0 {
		a := &allowList{nets: cfg.AllowFrom, addrs: addrs, log: cfg.Logger, now: cfg.Now, metrics: cfg.Metrics}
		cfg.Logger.Info("callbacks taken only from WXREPLY_ALLOW_FROM",
			"networks", fmt.Sprint(cfg.AllowFrom), "trusted_proxies", fmt.Sprint(cfg.TrustedProxies))
		mws = append(mws, a.middleware)
	}
	if cfg.APIRate > 0 && cfg.Push != nil && cfg.Push.APIKey != "" {
		l := newAPILimiter(cfg.APIRate, cfg.Push.APIKey, addrs, cfg.Now, cfg.Logger)
		if cfg.Metrics != nil {
			cfg.Metrics.Registry.MustRegister(l.limited, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "wxreply_api_clients_tracked",
				Help: "Clients of /api/v1 whose rate is tracked: at most 10000 with the API key and 10000 without, beyond which new ones of a kind share one limit.",
			}, func() float64 { return float64(l.size()) }))
		}
		mws = append(mws, l.middleware)
	}
	return mws
}

// allowList refuses callbacks from client addresses outside nets.
type allowList struct {
	nets    []netip.Prefix
	addrs   clientAddrs
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics // nil: none
	logs    sampled
}

func (a *allowList) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Path() != callbackPath {
			return next(c)
		}
		r := c.Request()
		client := a.addrs.of(r)
		if client.IsValid() && containsAddr(a.nets, client) {
			return next(c)
		}
		a.metrics.refuse(RefusedSource)
		if skipped, ok := a.logs.take(a.now()); ok {
			attrs := []any{"client", addrString(client), "peer", r.RemoteAddr, "refused_without_a_line", skipped}
			if r.Header.Get(echo.HeaderXForwardedFor) != "" && !containsAddr(a.addrs.trusted, parseAddr(r.RemoteAddr)) {
				attrs = append(attrs, "hint", "X-Forwarded-For ignored: the peer is not in WXREPLY_TRUSTED_PROXIES")
			}
			a.log.Warn("callback refused: the client is not in WXREPLY_ALLOW_FROM (at most one line a minute)", attrs...)
		}
		return echo.NewHTTPError(http.StatusForbidden, "source address not allowed")
	}
}

// apiLimiter limits each client of /api/v1 to a rate, with bursts of
// twice as many. It runs before the key is checked: failed attempts are
// requests like any other. Clients are keyed by address, IPv6 ones by
// their /64 (one host can hold a whole /64). Memory is bounded: a client
// idle long enough to have its whole burst back is dropped, which forgets
// nothing, and while maxAPIClients are tracked new clients share one
// limiter.
type apiLimiter struct {
	addrs   clientAddrs
	limit   rate.Limit
	burst   int
	idle    time.Duration
	now     func() time.Time
	log     *slog.Logger
	limited prometheus.Counter
	logs    sampled

	// Requests that carry the API key and the rest are limited in tables
	// of their own, so that a flood without the key (from addresses it
	// invents) cannot fill the table and leave the key's holders to share
	// the overflow limit. The key is compared in constant time, as
	// bearerAuth does, before it checks it again.
	key          [32]byte
	keyed, anons limiterTable
}

// limiterTable is the per-client limiters of one kind of request, at most
// maxAPIClients, and the one limiter the rest share while it is full.
type limiterTable struct {
	mu       sync.Mutex
	clients  map[netip.Addr]*apiClient
	overflow *rate.Limiter
	swept    time.Time
}

type apiClient struct {
	lim  *rate.Limiter
	seen time.Time
}

func newAPILimiter(perSecond float64, apiKey string, addrs clientAddrs, now func() time.Time, log *slog.Logger) *apiLimiter {
	burst := max(1, int(min(math.Ceil(2*perSecond), 1<<30)))
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &apiLimiter{
		addrs: addrs,
		limit: rate.Limit(perSecond),
		burst: burst,
		idle:  max(apiClientIdle, refill),
		now:   now,
		log:   log,
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wxreply_api_requests_limited_total",
			Help: "Requests to /api/v1 answered 429: the client was over WXREPLY_API_RATE.",
		}),
		key:   sha256.Sum256([]byte(apiKey)),
		keyed: newLimiterTable(rate.Limit(perSecond), burst, now()),
		anons: newLimiterTable(rate.Limit(perSecond), burst, now()),
	}
}

func newLimiterTable(limit rate.Limit, burst int, now time.Time) limiterTable {
	return limiterTable{clients: map[netip.Addr]*apiClient{}, overflow: rate.NewLimiter(limit, burst), swept: now}
}

// hasKey reports whether r carries the API key.
func (l *apiLimiter) hasKey(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(l.key[:], got[:]) == 1
}

func (l *apiLimiter) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); p != apiPrefix && !strings.HasPrefix(p, apiPrefix+"/") {
			return next(c)
		}
		now := l.now()
		client := l.addrs.of(c.Request())
		table := &l.anons
		if l.hasKey(c.Request()) {
			table = &l.keyed
		}
		lim := l.limiterOf(table, clientKey(client), now)
		if lim.AllowN(now, 1) {
			return next(c)
		}
		// Seconds until the next token, rounded up: a client that waits
		// that long is let through.
		wait := (1 - lim.TokensAt(now)) / float64(l.limit)
		retry := max(1, int(math.Ceil(wait)))
		l.limited.Inc()
		if skipped, ok := l.logs.take(now); ok {
			l.log.Warn("push API request refused: the client is over WXREPLY_API_RATE (at most one line a minute)",
				"client", addrString(client), "retry_after", retry, "refused_without_a_line", skipped)
		}
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(retry))
		return writeError(c, http.StatusTooManyRequests, fmt.Sprintf(
			"too many requests: at most %s a second from one client (WXREPLY_API_RATE); retry after %d s",
			strconv.FormatFloat(float64(l.limit), 'g', -1, 64), retry))
	}
}

// clientKey is what a client's limit is kept under: its address, or for
// IPv6 its /64.
func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// limiterOf is key's limiter in t, made on its first request.
func (l *apiLimiter) limiterOf(t *limiterTable, key netip.Addr, now time.Time) *rate.Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[key]; ok {
		c.seen = now
		return c.lim
	}
	// Sweeping costs a pass over the clients: at most once a second
	// while full, otherwise once per idle period.
	if since := now.Sub(t.swept); since >= l.idle || (len(t.clients) >= maxAPIClients && since >= time.Second) {
		for k, c := range t.clients {
			if now.Sub(c.seen) >= l.idle {
				delete(t.clients, k)
			}
		}
		t.swept = now
	}
	if len(t.clients) >= maxAPIClients {
		return t.overflow
	}
	c := &apiClient{lim: rate.NewLimiter(l.limit, l.burst), seen: now}
	t.clients[key] = c
	return c.lim
}

// size is how many clients are tracked, with the key and without.
func (l *apiLimiter) size() int {
	n := 0
	for _, t := range []*limiterTable{&l.keyed, &l.anons} {
		t.mu.Lock()
		n += len(t.clients)
		t.mu.Unlock()
	}
	return n
}
