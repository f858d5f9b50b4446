package jsonrpc

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A flood of unsolicited responses takes at most UnsolicitedLines debug
// lines a window; the next window's first line counts the ones dropped.
func TestUnsolicitedIsRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	u := NewUnsolicited(zap.New(core))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u.now = func() time.Time { return now }
	for i := range 1000 {
		u.Note("stdio", json.RawMessage(`7`), "none")
		if i == 500 {
			now = now.Add(UnsolicitedWindow / 2)
		}
	}
	if n := logs.Len(); n != UnsolicitedLines {
		t.Fatalf("%d lines in one window, want %d", n, UnsolicitedLines)
	}
	now = now.Add(UnsolicitedWindow)
	u.Note("http", json.RawMessage(strings.Repeat("9", 1000)), "none")
	all := logs.AllUntimed()
	if len(all) != UnsolicitedLines+1 {
		t.Fatalf("%d lines after the window, want %d", len(all), UnsolicitedLines+1)
	}
	for _, e := range all {
		if e.Level != zapcore.DebugLevel || e.Stack != "" {
			t.Errorf("line at %v with stack %q", e.Level, e.Stack)
		}
	}
	last := all[len(all)-1].ContextMap()
	if last["not_logged_before"] != int64(1000-UnsolicitedLines) || last["transport"] != "http" || len(last["id"].(string)) > idShown+len("…") {
		t.Errorf("last line %v", last)
	}
}

// Below debug nothing is counted or logged; a nil Unsolicited is silent.
func TestUnsolicitedBelowDebug(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	NewUnsolicited(zap.New(core)).Note("stdio", nil, "none")
	(*Unsolicited)(nil).Note("stdio", nil, "none")
	if logs.Len() != 0 {
		t.Fatalf("%d lines", logs.Len())
	}
}

// mcp-go's error record for an unsolicited response (with a stack trace,
// through zapslog) becomes one debug line without a stack; every other
// record passes through as it was.
func TestQuietUnsolicited(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	u := NewUnsolicited(zap.New(core))
	log := slog.New(QuietUnsolicited(zapslog.NewHandler(core), u)).With("k", "v").WithGroup("g")
	log.Error(mcpUnsolicited, "err", "no pending request found for session s, request 77")
	log.Error("Failed to write SSE event", "err", "broken pipe")
	all := logs.AllUntimed()
	if len(all) != 2 {
		t.Fatalf("%d lines: %v", len(all), all)
	}
	if e := all[0]; e.Level != zapcore.DebugLevel || e.Stack != "" || !strings.Contains(e.ContextMap()["reason"].(string), "request 77") {
		t.Errorf("unsolicited: %v %v %q", e.Level, e.ContextMap(), e.Stack)
	}
	if e := all[1]; e.Level != zapcore.ErrorLevel || e.Message != "Failed to write SSE event" {
		t.Errorf("other: %v %q", e.Level, e.Message)
	}
}
