package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
)

// officeHoursRules answer "人工" in office hours (Shanghai) and out of them.
const officeHoursRules = `
rules:
  - name: on-duty
    match:
      text: {contains: 人工}
      time: {days: mon-fri, hours: "09:00-18:00"}
    reply: [{text: 客服在线}]
  - name: off-duty
    match:
      text: {contains: 人工}
      time: {days: mon-fri, hours: "09:00-18:00", outside: true}
    reply: [{text: 下班了}]
`

// TestTimeOfDayThroughTheServer: the server's clock (Config.Now) decides
// time: match keys, in the rules file's time zone, through the real
// wiring. The clock is moved to Monday 10:00, Monday 18:30 and Sunday
// 10:00 in Shanghai; each message gets the matching reply.
func TestTimeOfDayThroughTheServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(officeHoursRules), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	h := newHarness(t, harnessOptions{rules: path, config: func(c *server.Config) {
		c.Now = clock.Now
		c.MaxClockSkew = -1 // the callbacks' timestamps are the real clock's
	}})
	cst := time.FixedZone("CST", 8*3600)
	// The coming Monday in Shanghai, so the clock only moves forward.
	today := time.Now().In(cst)
	monday := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, cst)
	for monday.Weekday() != time.Monday || !monday.After(today) {
		monday = monday.AddDate(0, 0, 1)
	}
	steps := []struct {
		at   time.Time
		want string
	}{
		{monday.Add(10 * time.Hour), "客服在线"},
		{monday.Add(18*time.Hour + 30*time.Minute), "下班了"},
		{monday.AddDate(0, 0, 6).Add(10 * time.Hour), "下班了"}, // Sunday
	}
	for i, s := range steps {
		clock.off.Store(int64(time.Until(s.at)))
		openid := "oTIME_user_" + string(rune('a'+i))
		if code, body := h.post(t, text(openid, "转人工", int64(975001+i))); code != 200 || body != "success" {
			t.Fatalf("%s: answered %d %q", s.at, code, body)
		}
		got := h.waitDelivered(t, i+1)[i]
		if got.OpenID != openid || got.Custom.Text == nil || got.Custom.Text.Content != s.want {
			t.Errorf("at %s (Shanghai) the reply is %s, want %q", s.at.Format("Mon 15:04"), got.Body, s.want)
		}
	}
}
