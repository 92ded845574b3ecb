package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The `time:` match key: the weekdays and hours, in the account's time
// zone (`timezone:` at the top of the file, Asia/Shanghai unless set),
// at which the server receives the message. `outside: true` turns it
// around, so an out-of-hours reply is one rule:
//
//	match: {msgtype: text, time: {days: mon-fri, hours: "09:00-18:00", outside: true}}
//
// The clock is the Set's (WithClock), never the message's CreateTime,
// which the sender's side sets.

// defaultTimezone is the time zone of `time:` when the file names none:
// the Official Accounts' home.
const defaultTimezone = "Asia/Shanghai"

// timeSpec is `time:` as written.
type timeSpec struct {
	Days    stringList `yaml:"days"`    // mon … sun, or ranges such as mon-fri; any of
	Hours   stringList `yaml:"hours"`   // "HH:MM-HH:MM", any of; a range may cross midnight
	Outside bool       `yaml:"outside"` // match when the message is not within days and hours
}

// timeWindow is a compiled `time:`.
type timeWindow struct {
	days    [7]bool // by time.Weekday; all true when days is not given
	spans   []span  // none: the whole day
	outside bool
}

// span is a range of minutes since midnight, from included, to excluded.
// A span with to <= from crosses midnight: it belongs to the day it
// starts on, so "22:00-06:00" on fri is Friday 22:00 to Saturday 06:00.
type span struct{ from, to int }

// holds reports whether t is within the window, or outside it for
// `outside: true`. A zero t is a message decided without a clock (the
// loader's own checks): the window may hold.
func (w *timeWindow) holds(t time.Time) bool {
	if t.IsZero() {
		return true
	}
	return w.within(t) != w.outside
}

func (w *timeWindow) within(t time.Time) bool {
	day := t.Weekday()
	if len(w.spans) == 0 {
		return w.days[day]
	}
	m := t.Hour()*60 + t.Minute()
	yesterday := (day + 6) % 7
	for _, s := range w.spans {
		switch {
		case s.from < s.to:
			if w.days[day] && s.from <= m && m < s.to {
				return true
			}
		case w.days[day] && m >= s.from, w.days[yesterday] && m < s.to:
			return true
		}
	}
	return false
}

// dayNames are the days `days:` takes, by time.Weekday.
var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseDay is a day's time.Weekday: its three letters or its full
// English name, any case.
func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range dayNames {
		if s == n || s == strings.ToLower(time.Weekday(i).String()) {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// parseDays adds one value of `days:` to days: a day, or a range from one
// day to another that may wrap past Sunday (fri-mon).
func parseDays(v string, days *[7]bool) error {
	from, to, isRange := strings.Cut(v, "-")
	a, ok := parseDay(from)
	b := a
	if ok && isRange {
		b, ok = parseDay(to)
	}
	if !ok {
		return fmt.Errorf("%q is not a day: want mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri", strings.TrimSpace(v))
	}
	for d := a; ; d = (d + 1) % 7 {
		days[d] = true
		if d == b {
			return nil
		}
	}
}

// parseSpan parses "HH:MM-HH:MM"; the end may be 24:00.
func parseSpan(v string) (span, error) {
	bad := fmt.Errorf("%q is not a range of hours: want HH:MM-HH:MM, as in \"09:00-18:00\" (or \"22:00-06:00\" across midnight)", strings.TrimSpace(v))
	from, to, ok := strings.Cut(v, "-")
	if !ok {
		return span{}, bad
	}
	a, err := parseClock(from, false)
	if err != nil {
		return span{}, fmt.Errorf("%s: %v", bad, err)
	}
	b, err := parseClock(to, true)
	if err != nil {
		return span{}, fmt.Errorf("%s: %v", bad, err)
	}
	if a == b || (a == 0 && b == 24*60) {
		return span{}, fmt.Errorf("%q covers no time or the whole day: for the whole day leave hours out", strings.TrimSpace(v))
	}
	if b == 24*60 {
		b = 0 // up to midnight: the span ends where the next day begins
	}
	return span{a, b}, nil
}

// parseClock parses H:MM or HH:MM into minutes since midnight; 24:00
// only when end is set.
func parseClock(s string, end bool) (int, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not a time such as 09:00", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case err1 != nil || err2 != nil || hh < 0 || mm < 0:
		return 0, fmt.Errorf("%q is not a time such as 09:00", s)
	case end && hh == 24 && mm == 0:
		return 24 * 60, nil
	case hh > 23 || mm > 59:
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59, or 24:00 as an end)", s)
	}
	return hh*60 + mm, nil
}

// compileTime compiles `time:` at path, reporting each bad value at its
// position; nil when it is broken.
func (c *compiler) compileTime(path string, t *timeSpec) *timeWindow {
	if t == nil || c.broken(path) {
		return nil
	}
	w := &timeWindow{outside: t.Outside}
	ok := true
	for i, v := range t.Days {
		if err := parseDays(v, &w.days); err != nil {
			at := c.elem(path+".days", i)
			c.add(c.node(at), at, false, "%v", err)
			ok = false
		}
	}
	if len(t.Days) == 0 {
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	for i, v := range t.Hours {
		s, err := parseSpan(v)
		if err != nil {
			at := c.elem(path+".hours", i)
			c.add(c.node(at), at, false, "%v", err)
			ok = false
			continue
		}
		w.spans = append(w.spans, s)
	}
	if len(t.Days) == 0 && len(t.Hours) == 0 && !c.corruptAt(path+".days") && !c.corruptAt(path+".hours") {
		c.add(c.node(path), path, false, "needs days, hours or both, as in {days: mon-fri, hours: \"09:00-18:00\"}")
		ok = false
	}
	if !ok {
		return nil
	}
	return w
}

// compileTimezone is the location of `timezone:`, Asia/Shanghai when it
// is not given. China has kept UTC+8 without summer time since 1991, so
// Asia/Shanghai works on a system without time-zone data too.
func (c *compiler) compileTimezone(name string) *time.Location {
	name = strings.TrimSpace(name)
	if name == "" {
		name = defaultTimezone
	}
	loc, err := time.LoadLocation(name)
	switch {
	case err == nil && name != "Local":
		return loc
	case name == defaultTimezone:
		return time.FixedZone("CST", 8*60*60)
	case !c.corruptAt("timezone"):
		c.add(c.node("timezone"), "timezone", false, "%q is not a time zone this system knows: want an IANA name such as Asia/Shanghai or UTC", name)
	}
	return time.UTC
}
