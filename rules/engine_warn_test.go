package rules

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A rules file that loads with warnings says so in the server's log, as
// check prints them: an operator who never runs check still sees them.
func TestEngineLogsWarnings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	src := "rules:\n  - name: welcome\n    match: {event: subscibe}\n    reply:\n      - text: hi\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	_, err := NewEngine(path, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "rules file warning") || !strings.Contains(out, "did you mean subscribe") {
		t.Errorf("no warning logged for event: subscibe:\n%s", out)
	}
}
