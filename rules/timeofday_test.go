package rules

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const officeHours = `
rules:
  - name: hello-office
    match: {text: {equals: hi}, time: {days: mon-fri, hours: "09:00-18:00"}}
    reply: [{text: 上班时间}]
  - name: after-hours
    match: {msgtype: text, time: {days: [mon-fri], hours: "09:00-18:00", outside: true}}
    reply: [{text: 下班了}]
  - name: night
    match: {event: CLICK, time: {days: [fri, sat], hours: ["22:00-02:00"]}}
    reply: [{text: 夜深了}]
default:
  reply: [{text: 默认}]
`

func TestTimeOfDay(t *testing.T) {
	shanghai := time.FixedZone("CST", 8*3600)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, shanghai)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC() // the clock's zone must not count: the file's does
	}
	tests := []struct {
		name string
		now  string
		msg  string // text, or "click"
		want []string
	}{
		{"Monday morning, in hours", "2026-12-07 09:00", "hi", []string{"hello-office"}},
		{"Friday 17:59, in hours", "2026-12-04 17:59", "hi", []string{"hello-office"}},
		{"Friday 18:00, out", "2026-12-04 18:00", "hi", []string{"after-hours"}},
		{"Monday 08:59, out", "2026-12-07 08:59", "hi", []string{"after-hours"}},
		{"Saturday noon, out", "2026-12-05 12:00", "hi", []string{"after-hours"}},
		{"other text in hours goes to the default", "2026-12-07 10:00", "订单", []string{"default"}},
		{"Friday 23:00 click", "2026-12-04 23:00", "click", []string{"night"}},
		{"Saturday 01:59 click: Friday's night", "2026-12-05 01:59", "click", []string{"night"}},
		{"Sunday 01:00 click: Saturday's night", "2026-12-06 01:00", "click", []string{"night"}},
		{"Saturday 02:00 click: over", "2026-12-05 02:00", "click", nil},
		{"Friday 01:00 click: Thursday's night is not one", "2026-12-04 01:00", "click", nil},
		{"Monday 01:00 click", "2026-12-07 01:00", "click", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(tt.now)
			s := mustParse(t, officeHours, WithClock(func() time.Time { return now }))
			m := textMsg(tt.msg)
			if tt.msg == "click" {
				m = eventMsg("CLICK", "K")
			}
			if got := s.Decide(m).Rules; !slices.Equal(got, tt.want) {
				t.Errorf("at %s (Shanghai) %q matched %q, want %q", tt.now, tt.msg, got, tt.want)
			}
		})
	}
}

func TestTimeZone(t *testing.T) {
	src := `
timezone: America/New_York
rules:
  - name: day
    match: {msgtype: text, time: {hours: "09:00-17:00"}}
    reply: [{text: day}]
`
	// 14:00 UTC is 09:00 in New York in December, 22:00 in Shanghai.
	now := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	s, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(src), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Skipf("no time-zone data for America/New_York here: %v", err)
	}
	if got := s.Decide(textMsg("x")).Rules; !slices.Equal(got, []string{"day"}) {
		t.Errorf("matched %q at 09:00 in New York", got)
	}
	now = now.Add(-time.Minute)
	if got := s.Decide(textMsg("x")).Rules; len(got) != 0 {
		t.Errorf("matched %q at 08:59 in New York", got)
	}
}

func TestTimeProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []problem
	}{
		{"bad day names and a bad range", `
rules:
  - name: a
    match: {msgtype: text, time: {days: [mon, funday, mon-fry], hours: "9:00-18:00"}}`,
			[]problem{{4, 47, `rules[0].match.time.days[1]: "funday" is not a day`},
				{4, 55, `rules[0].match.time.days[2]: "mon-fry" is not a day`}}},
		{"bad times", `
rules:
  - name: a
    match:
      time:
        hours: ["25:00-26:00", "09:00", "9-18", "09:60-10:00", "24:00-01:00"]`,
			[]problem{{6, 17, `rules[0].match.time.hours[0]: "25:00-26:00" is not a range of hours`},
				{6, 32, `rules[0].match.time.hours[1]: "09:00" is not a range of hours`},
				{6, 41, `rules[0].match.time.hours[2]: "9-18" is not a range of hours`},
				{6, 49, `"09:60" is not a time of day`},
				{6, 64, `"24:00" is not a time of day`}}},
		{"empty and whole-day ranges", `
rules:
  - name: a
    match: {time: {hours: ["10:00-10:00", "00:00-24:00"]}}`,
			[]problem{{4, 28, "covers no time or the whole day: for the whole day leave hours out"},
				{4, 43, "covers no time or the whole day"}}},
		{"neither days nor hours", `
rules:
  - name: a
    match: {msgtype: text, time: {outside: true}}`,
			[]problem{{4, 34, "rules[0].match.time: needs days, hours or both"}}},
		{"time with no value", `
rules:
  - name: a
    match: {msgtype: text, time: }`,
			[]problem{{4, 34, "rules[0].match.time: no value: give days, hours or both"}}},
		{"unknown key in time", `
rules:
  - name: a
    match: {time: {days: mon, hour: "09:00-10:00"}}`,
			[]problem{{4, 31, `unknown key "hour"; known keys: days, hours, outside`}}},
		{"unknown time zone", `
timezone: Mars/Olympus
rules:
  - name: a
    match: {time: {days: mon}}`,
			[]problem{{2, 11, `timezone: "Mars/Olympus" is not a time zone this system knows`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(tt.src))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			got := le.Problems
			for i := 0; i < max(len(got), len(tt.want)); i++ {
				switch {
				case i >= len(got):
					t.Errorf("missing problem %d:%d: %s", tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				case i >= len(tt.want):
					t.Errorf("unexpected problem %s", got[i])
				case got[i].Line != tt.want[i].line || got[i].Col != tt.want[i].col || !strings.Contains(got[i].Msg, tt.want[i].msg):
					t.Errorf("problem %d = %s\n want %d:%d: …%s…", i, got[i], tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				}
			}
		})
	}
}

// A Set decided without a clock reading (the loader's own checks of
// msgmenu choices) takes a time: key as one that may hold.
func TestTimeWithoutClock(t *testing.T) {
	w := timeWindow{outside: true}
	if !w.holds(time.Time{}) {
		t.Error("a zero time does not hold")
	}
}

// The sample's staff rules answer in and out of office hours, as its
// comment promises.
func TestSampleOfficeHours(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		now  time.Time
		want string
	}{
		{time.Date(2026, 12, 7, 10, 0, 0, 0, cst), "staff-on-duty"},   // Monday 10:00
		{time.Date(2026, 12, 7, 18, 30, 0, 0, cst), "staff-off-duty"}, // Monday 18:30
		{time.Date(2026, 12, 6, 10, 0, 0, 0, cst), "staff-off-duty"},  // Sunday 10:00
	}
	for _, tt := range tests {
		s, err := Load("../rules.yaml", WithClock(func() time.Time { return tt.now }))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Decide(textMsg("转人工")).Rules; !slices.Equal(got, []string{tt.want}) {
			t.Errorf("at %s: %q, want %s", tt.now, got, tt.want)
		}
	}
}

// The schema takes what the loader takes of time: and timezone:, and
// flags the shapes the loader refuses.
func TestTimeSchema(t *testing.T) {
	d := loadSchema(t)
	tests := []struct {
		src string
		ok  bool
	}{
		{officeHours, true},
		{"timezone: UTC\nrules: [{name: a, match: {time: {days: [mon-fri, sun]}}}]\n", true},
		{"rules: [{name: a, match: {time: {hours: [\"09:00-12:00\", \"13:00-18:00\"], outside: true}}}]\n", true},
		{"rules: [{name: a, match: {time: {outside: true}}}]\n", false},
		{"rules: [{name: a, match: {time: {}}}]\n", false},
		{"rules: [{name: a, match: {time: {hour: \"09:00-10:00\"}}}]\n", false},
		{"rules: [{name: a, match: {time: {days: mon, outside: maybe}}}]\n", false},
		{"timezone: [UTC]\nrules: [{name: a, match: {time: {days: mon}}}]\n", false},
	}
	for _, tt := range tests {
		var v any
		if err := yaml.Unmarshal([]byte(tt.src), &v); err != nil {
			t.Fatal(err)
		}
		_, loadErr := Parse("testdata/inline.yaml", []byte(tt.src))
		if (loadErr == nil) != tt.ok {
			t.Errorf("%q: the loader says %v; the case is wrong", tt.src, loadErr)
		}
		if err := d.validate("", v); (err == nil) != tt.ok {
			t.Errorf("%q: the schema says %v, want ok=%v", tt.src, err, tt.ok)
		}
	}
}
