package tools

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A reply slower than ReplyTimeout does not hold up the chat: the line
// after it is read, and the late reply shows, in order, with that line's
// replies.
func TestSandboxSlowReply(t *testing.T) {
	r := &scripted{}
	got := runSandboxWith(t, SandboxOptions{
		Serve:        scriptedServe(r),
		In:           strings.NewReader("slow\nrelease\nhi\n"),
		ReplyTimeout: 200 * time.Millisecond,
	})
	want := "> slow\n[still sending after waiting; later replies show after your next line, and the server log says why]\n" +
		"> release\n< slow reply\n< released\n" +
		"> hi\n< you said: hi\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("the terminal showed:\n%s\nwant it to end with:\n%s", got, want)
	}
}

// A line too long for the sandbox is refused with a note and the chat
// goes on; one just short enough is sent (and refused by the server, as
// WeChat would never post it).
func TestSandboxLongLines(t *testing.T) {
	r := &scripted{}
	tooLong := strings.Repeat("长", maxLine/3+1) // over maxLine bytes
	long := strings.Repeat("a", 70<<10)
	got := runSandbox(t, scriptedServe(r), tooLong+"\nhi\n"+long+"\r\nbye")
	want := []string{
		"> " + strings.Repeat("长", 26) + "…\n[a line of " + strconv.Itoa(len(tooLong)) + " bytes was not sent: the sandbox takes lines up to 1048576]\n",
		"> hi\n< you said: hi\n",
		"[the server answered 413 Request Entity Too Large",
		"> bye\n< you said: bye\n",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("the terminal does not show %.120q", w)
		}
	}
	if n := len(r.messages()); n != 2 {
		t.Errorf("the server got %d messages, want 2 (hi, bye)", n)
	}
}
