package rules

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is what an Engine did since it was made, for the server's metrics
// and its health report: which rules answered, and how the reloads went.
type Stats struct {
	Hash  string // the rules in force (Set.Hash)
	Rules int    // their number, the default not counted

	// Matches counts the messages each rule in force answered, by rule
	// name, with "default" for the default reply when the file has one.
	// Every rule in force is there, at 0 until it matches; a rule that a
	// reload removed is not, so the names are bounded by the rules file.
	// A rule kept across reloads keeps its count.
	Matches map[string]int64
	NoMatch int64 // messages no rule (nor the default) answered

	LoadedAt       time.Time // when the rules in force were swapped in
	LastSuccess    time.Time // the last load that succeeded, a reload of an unchanged file too
	LastFailure    time.Time // the last reload that was refused; zero when none was
	ReloadFailures int64     // reloads refused, each keeping the rules in force
}

// CountMatch counts one message answered with rules, the names as
// Decision.Rules gives them (none: nothing matched). The caller counts
// each message once, so a WeChat retry that was recognised is not
// counted again.
func (e *Engine) CountMatch(rules []string) {
	e.matches.count(rules)
}

// Stats returns the Engine's counters and the state of the rules in force.
func (e *Engine) Stats() Stats {
	s := e.Current()
	st := Stats{
		Hash:           s.Hash(),
		Rules:          s.Len(),
		Matches:        make(map[string]int64, s.Len()+1),
		NoMatch:        e.matches.none.Load(),
		LoadedAt:       unixTime(e.loads.loadedAt.Load()),
		LastSuccess:    unixTime(e.loads.success.Load()),
		LastFailure:    unixTime(e.loads.failure.Load()),
		ReloadFailures: e.loads.failures.Load(),
	}
	for _, name := range s.names() {
		st.Matches[name] = e.matches.get(name)
	}
	return st
}

// names lists the rule names a Decision of s may give, the default's
// included.
func (s *Set) names() []string {
	out := make([]string, 0, len(s.rules)+1)
	for _, r := range s.rules {
		out = append(out, r.name)
	}
	if s.def != nil {
		out = append(out, defaultName)
	}
	return out
}

// matchCounts counts matches by rule name. A name's counter is made on
// its first match, so the hot path reads the map under a read lock and
// adds; keep drops the names a reload removed, and Stats shows only the
// names in force, so a count that raced a reload cannot bring a removed
// rule back.
type matchCounts struct {
	mu   sync.RWMutex
	by   map[string]*atomic.Int64
	none atomic.Int64
}

func (m *matchCounts) count(names []string) {
	if len(names) == 0 {
		m.none.Add(1)
		return
	}
	for _, name := range names {
		m.counter(name).Add(1)
	}
}

func (m *matchCounts) counter(name string) *atomic.Int64 {
	m.mu.RLock()
	n := m.by[name]
	m.mu.RUnlock()
	if n != nil {
		return n
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n = m.by[name]; n == nil {
		if m.by == nil {
			m.by = make(map[string]*atomic.Int64)
		}
		n = new(atomic.Int64)
		m.by[name] = n
	}
	return n
}

func (m *matchCounts) get(name string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if n := m.by[name]; n != nil {
		return n.Load()
	}
	return 0
}

// keep forgets the counts of the rules s does not have.
func (m *matchCounts) keep(s *Set) {
	in := make(map[string]bool, len(s.rules)+1)
	for _, name := range s.names() {
		in[name] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.by {
		if !in[name] {
			delete(m.by, name)
		}
	}
}

// loadTimes records the loads of the rules file, as Unix nanoseconds (0
// for never).
type loadTimes struct {
	loadedAt, success, failure atomic.Int64
	failures                   atomic.Int64
}

// loaded records a load that succeeded at now; swapped says the rules it
// read came in force (the file had changed).
func (l *loadTimes) loaded(now time.Time, swapped bool) {
	if swapped {
		l.loadedAt.Store(now.UnixNano())
	}
	l.success.Store(now.UnixNano())
}

func (l *loadTimes) failed(now time.Time) {
	l.failures.Add(1)
	l.failure.Store(now.UnixNano())
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
