package access

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const deployTok = "deploy-bot-token-0123456789"

// skipModesOnWindows skips a case about file modes, which Windows lacks.
func skipModesOnWindows(t *testing.T, about string) {
	t.Helper()
	if runtime.GOOS == "windows" && strings.Contains(about, "other users") {
		t.Skip("no permission bits for other users on Windows")
	}
}

// reloadFixture is a guard over an approvers file and a tokens file kept
// in force by a Reloader, with an injected clock and modification times.
type reloadFixture struct {
	t                         *testing.T
	approversPath, tokensPath string
	now, mtime                time.Time
	logs                      *observer.ObservedLogs
	r                         *Reloader
	next                      *reached
	h                         http.Handler
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	dir := t.TempDir()
	f := &reloadFixture{
		t:             t,
		approversPath: filepath.Join(dir, "approvers.yaml"),
		tokensPath:    filepath.Join(dir, "tokens.yaml"),
		now:           time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC),
	}
	f.mtime = f.now.Add(-time.Hour)
	f.write(f.approversPath, validApproversYAML)
	f.write(f.tokensPath, validTokensYAML)
	core, logs := observer.New(zapcore.InfoLevel)
	f.logs = logs
	f.r = NewReloader(zap.New(core), func() time.Time { return f.now })
	f.r.Reserve("the access token", agentTok)
	ap, err := f.r.Approvers(f.approversPath)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := f.r.Tokens(f.tokensPath)
	if err != nil {
		t.Fatal(err)
	}
	f.next = &reached{}
	f.h = Guard(HTTPConfig{AccessToken: agentTok, OperatorToken: operatorTok, Approvers: ap, Tokens: tk}, f.next)
	return f
}

// write writes data at path, mode 0600, with a modification time a minute
// after the previous write's and long before now: not racy.
func (f *reloadFixture) write(path, data string) {
	f.t.Helper()
	f.mtime = f.mtime.Add(time.Minute)
	f.writeAt(path, data, f.mtime)
}

func (f *reloadFixture) writeAt(path, data string, mtime time.Time) {
	f.t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		f.t.Fatal(err)
	}
}

// who is the principal the guard gives the bearer of token, nil when it
// refuses the token.
func (f *reloadFixture) who(token string) *Principal {
	f.t.Helper()
	f.next.calls.Store(0)
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Host, r.RemoteAddr = "localhost:8080", "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+token)
	f.h.ServeHTTP(httptest.NewRecorder(), r)
	if f.next.calls.Load() == 0 {
		return nil
	}
	p := f.next.principal
	return &p
}

// expect checks who each token is.
func (f *reloadFixture) expect(want map[string]*Principal) {
	f.t.Helper()
	for tok, w := range want {
		got := f.who(tok)
		if (got == nil) != (w == nil) || (got != nil && *got != *w) {
			f.t.Errorf("bearer %s: principal %+v, want %+v", tok, got, w)
		}
	}
}

// messages are the log lines at level, each as its message and its error.
func (f *reloadFixture) messages(level zapcore.Level) []string {
	var out []string
	for _, e := range f.logs.FilterLevelExact(level).All() {
		line := e.Message
		if err, ok := e.ContextMap()["error"]; ok {
			line += ": " + err.(string)
		}
		out = append(out, line)
	}
	return out
}

var (
	deployBot    = &Principal{ID: "deploy-bot", Profile: ProfileAgent}
	aliceFinance = &Principal{ID: "alice", Profile: ProfileApprover, ApproverRole: "finance"}
)

const tokensAfter = "agents:\n  - id: deploy-bot\n    token_sha256: "

func TestReloaderPutsChangedFilesInForce(t *testing.T) {
	f := newReloadFixture(t)
	f.expect(map[string]*Principal{ciTok: ciBot, aliceTok: alice, deployTok: nil, agentTok: agent})

	f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n")
	f.write(f.approversPath, strings.Replace(validApproversYAML, "role: compliance_officer", "role: finance", 1))
	// Nothing changes until the check.
	f.expect(map[string]*Principal{ciTok: ciBot, deployTok: nil, aliceTok: alice})

	f.r.Check()
	f.expect(map[string]*Principal{ciTok: nil, deployTok: deployBot, aliceTok: aliceFinance, agentTok: agent})
	if got := f.messages(zapcore.InfoLevel); len(got) != 2 || got[0] != "credentials file reloaded" {
		t.Fatalf("info logs %q, want two reloads", got)
	}

	// An unchanged file is not reloaded again.
	f.r.Check()
	if got := f.messages(zapcore.InfoLevel); len(got) != 2 {
		t.Fatalf("info logs %q after a check with nothing changed", got)
	}
	if got := f.messages(zapcore.ErrorLevel); len(got) != 0 {
		t.Fatalf("error logs %q", got)
	}
}

func TestReloaderKeepsThePreviousContentsOfAFailingFile(t *testing.T) {
	h1 := sha("another-token-0123456789")
	for _, tc := range []struct {
		name    string
		breakIt func(f *reloadFixture)
		wantErr string
	}{
		{"a syntax error", func(f *reloadFixture) { f.write(f.tokensPath, "agents:\n  - id: [\n") }, "tokens.yaml: yaml: line 2: did not find expected node content"},
		{"an unknown field", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"    role: finance\n")
		}, `tokens.yaml:7: agents[1]: unknown field "role" (allowed: id, token_sha256)`},
		{"a duplicate id", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"  - id: ci-bot\n    token_sha256: "+h1+"\n")
		}, `tokens.yaml:7: agents[2]: duplicate id "ci-bot" (first at line 3)`},
		{"a duplicate hash", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"  - id: third\n    token_sha256: "+sha(ciTok)+"\n")
		}, `tokens.yaml:8: agents[2] (id "third"): token_sha256 is the same as agents[0] (id "ci-bot") at line 4`},
		{"an agent with an approver's id", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"  - id: alice\n    token_sha256: "+h1+"\n")
		}, `tokens.yaml:7: id "alice" is also the id of approver "alice"`},
		{"an agent with an approver's token", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"  - id: third\n    token_sha256: "+sha(aliceTok)+"\n")
		}, `tokens.yaml:8: token_sha256 of "third" is also the token of approver "alice"`},
		{"an approver with an agent's id", func(f *reloadFixture) {
			f.write(f.approversPath, validApproversYAML+"  - {id: ci-bot, role: finance, token_sha256: "+h1+"}\n")
		}, `approvers.yaml:9: id "ci-bot" is also the id of agent "ci-bot"`},
		{"an agent holding the access token", func(f *reloadFixture) {
			f.write(f.tokensPath, validTokensYAML+"  - id: third\n    token_sha256: "+sha(agentTok)+"\n")
		}, `tokens.yaml:8: token_sha256 of "third" is the hash of the access token`},
		{"a reserved id", func(f *reloadFixture) {
			f.write(f.tokensPath, "agents:\n  - id: cli\n    token_sha256: "+h1+"\n")
		}, `tokens.yaml:2: agents[0]: id "cli" is reserved`},
		{"the file removed", func(f *reloadFixture) {
			if err := os.Remove(f.tokensPath); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
		{"the file writable by others", func(f *reloadFixture) {
			f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n")
			if err := os.Chmod(f.tokensPath, 0o602); err != nil {
				t.Fatal(err)
			}
		}, "writable by other users (mode 0602)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skipModesOnWindows(t, tc.wantErr)
			f := newReloadFixture(t)
			tc.breakIt(f)
			f.r.Check()
			before := map[string]*Principal{ciTok: ciBot, aliceTok: alice, deployTok: nil, agentTok: agent}
			f.expect(before)
			errs := f.messages(zapcore.ErrorLevel)
			if len(errs) != 1 || !strings.HasPrefix(errs[0], "credentials file not reloaded: the previous contents stay in force: ") || !strings.Contains(errs[0], tc.wantErr) {
				t.Fatalf("error logs %q, want one containing %q", errs, tc.wantErr)
			}
			// Logged once, however often it is checked.
			f.r.Check()
			f.expect(before)
			if errs := f.messages(zapcore.ErrorLevel); len(errs) != 1 {
				t.Fatalf("error logs %q after a second check", errs)
			}
			// Fixed, it is in force at the next check.
			f.write(f.approversPath, validApproversYAML)
			f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n")
			f.r.Check()
			f.expect(map[string]*Principal{ciTok: nil, deployTok: deployBot, aliceTok: alice})
			if errs := f.messages(zapcore.ErrorLevel); len(errs) != 1 {
				t.Fatalf("error logs %q after the fix", errs)
			}
		})
	}
}

// A file refused for a conflict with the other file is put in force once
// the other file no longer conflicts, although it did not change itself.
func TestReloaderAppliesAFileOnceTheOtherNoLongerConflicts(t *testing.T) {
	f := newReloadFixture(t)
	f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n  - id: alice\n    token_sha256: "+sha(ciTok)+"\n")
	f.r.Check()
	f.expect(map[string]*Principal{ciTok: ciBot, deployTok: nil})
	f.write(f.approversPath, strings.Replace(validApproversYAML, "id: alice", "id: alice.b", 1))
	f.r.Check()
	f.expect(map[string]*Principal{
		ciTok:     {ID: "alice", Profile: ProfileAgent},
		deployTok: deployBot,
		aliceTok:  {ID: "alice.b", Profile: ProfileApprover, ApproverRole: "compliance_officer"},
	})
}

// A file rewritten at the same size without a new modification time (a
// coarse file-system clock) is read again while its modification time is
// within racyWindow of the last read; after that, size and modification
// time decide.
func TestReloaderRereadsARacyFile(t *testing.T) {
	f := newReloadFixture(t)
	mtime := f.mtime.Add(time.Minute)
	sameSize := func(token string) string { return tokensAfter + sha(token) + "\n" }
	f.writeAt(f.tokensPath, sameSize(deployTok), mtime)
	f.now = mtime.Add(racyWindow / 2)
	f.r.Check()
	f.expect(map[string]*Principal{deployTok: deployBot})

	// Same size, same modification time, new content: read again, since
	// the last read was within racyWindow of the modification time.
	f.writeAt(f.tokensPath, sameSize(reviewTok), mtime)
	f.now = f.now.Add(time.Second)
	f.r.Check()
	f.expect(map[string]*Principal{deployTok: nil, reviewTok: deployBot})

	// Read long after its modification time, the file is no longer racy:
	// an unchanged size and modification time skip the read.
	f.now = mtime.Add(time.Hour)
	f.r.Check()
	f.writeAt(f.tokensPath, sameSize(ciTok), mtime)
	f.r.Check()
	f.expect(map[string]*Principal{reviewTok: deployBot, ciTok: nil})
	f.writeAt(f.tokensPath, sameSize(ciTok), mtime.Add(time.Second))
	f.r.Check()
	f.expect(map[string]*Principal{reviewTok: nil, ciTok: deployBot})
}

func TestReloaderWarnsWhenOthersCanReadAFile(t *testing.T) {
	skipModesOnWindows(t, "other users")
	f := newReloadFixture(t)
	if got := f.messages(zapcore.WarnLevel); len(got) != 0 {
		t.Fatalf("warnings for 0600 files: %q", got)
	}
	f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n")
	if err := os.Chmod(f.tokensPath, 0o640); err != nil {
		t.Fatal(err)
	}
	f.r.Check()
	if got := f.messages(zapcore.WarnLevel); len(got) != 0 {
		t.Fatalf("warnings for a 0640 file: %q", got)
	}
	f.write(f.tokensPath, validTokensYAML)
	if err := os.Chmod(f.tokensPath, 0o644); err != nil {
		t.Fatal(err)
	}
	f.r.Check()
	f.expect(map[string]*Principal{ciTok: ciBot})
	w := f.logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(w) != 1 || !strings.Contains(w[0].Message, "readable by other users") || w[0].ContextMap()["file"] != f.tokensPath || w[0].ContextMap()["mode"] != "0644" {
		t.Fatalf("warnings %+v, want one naming the file and its mode", w)
	}
}

func TestReloaderRefusesABadFileAtStart(t *testing.T) {
	dir := t.TempDir()
	file := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	approvers := file("approvers.yaml", validApproversYAML, 0o600)
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"missing", filepath.Join(dir, "missing.yaml"), "load tokens: open "},
		{"invalid", file("bad.yaml", "agents: {}\n", 0o600), "load tokens: " + filepath.Join(dir, "bad.yaml") + ":1: agents: want a list"},
		{"an approver's id", file("alice.yaml", "agents: [{id: alice, token_sha256: "+sha(ciTok)+"}]\n", 0o600), `alice.yaml:1: id "alice" is also the id of approver "alice"`},
		{"writable by others", file("open.yaml", validTokensYAML, 0o666), "writable by other users"},
		{"a directory", dir, "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skipModesOnWindows(t, tc.wantErr)
			r := NewReloader(nil, nil)
			if _, err := r.Approvers(approvers); err != nil {
				t.Fatal(err)
			}
			tk, err := r.Tokens(tc.path)
			if err == nil || tk != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Tokens = %v, %v; want an error containing %q", tk, err, tc.wantErr)
			}
		})
	}
}

func TestReloaderRunChecksOnEveryTickUntilCancelled(t *testing.T) {
	f := newReloadFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { f.r.Run(ctx, tick); close(done) }()
	f.write(f.tokensPath, tokensAfter+sha(deployTok)+"\n")
	tick <- time.Time{}
	// Run receives the second tick only after the first check is over.
	tick <- time.Time{}
	f.expect(map[string]*Principal{deployTok: deployBot, ciTok: nil})
	cancel()
	<-done
}
