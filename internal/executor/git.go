package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The identity of every commit git.commit makes, unless the registry names
// another.
const (
	DefaultAuthorName  = "nano-vm-mcp"
	DefaultAuthorEmail = "nano-vm-mcp@localhost"
)

// Bounds of the git builtins' inputs and outputs.
const (
	maxPatchBytes   = 16 << 20
	maxMessageBytes = 64 << 10
	maxGitOutput    = 8 << 20
	// maxGitMessage bounds the git error text a failure carries.
	maxGitMessage = 2 << 10
)

// stageMeta is what git.stage records about a stage, in the stage's own
// administrative directory (.git/worktrees/NAME), so that it goes with
// the stage when git removes it.
type stageMeta struct {
	Repository string `json:"repository"`
	Base       string `json:"base"`
	// CommitKey is the idempotency key of the git.commit call that owns
	// the stage's commit; it is written before the commit is made.
	CommitKey string `json:"commit_key,omitempty"`
}

const stageMetaFile = "nano-vm-stage.json"

var hexRef = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// validRef reports whether s is a commit id or a reference name git would
// accept (git check-ref-format --allow-onelevel), refusing anything that
// could read as an option or a revision expression.
func validRef(s string) bool {
	if hexRef.MatchString(s) {
		return true
	}
	if s == "" || s == "@" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") ||
		strings.Contains(s, "@{") || strings.Contains(s, "//") || len(s) > 255 {
		return false
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return false
		}
	}
	return true
}

// stageRoot is the one directory stages live in: git.stage creates them
// there, and {{stage}}, git.commit and git.discard accept no other.
type stageRoot struct {
	mu   sync.Mutex
	dir  string // configured (Options.StageDir), or made on first use
	made bool   // the registry made dir and removes it on Close
	real string // dir with symbolic links resolved, once known
}

// root returns the stage directory, creating it (mode 0700) if needed.
func (s *stageRoot) root() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.real != "" {
		return s.real, nil
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "nano-vm-stages-")
		if err != nil {
			return "", err
		}
		s.dir, s.made = d, true
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("stage directory %s is writable by others (mode %#o)", real, fi.Mode().Perm())
	}
	s.real = real
	return real, nil
}

// path checks that v names a directory directly inside the root, whether
// or not it exists; the model never gets to name any other path.
func (s *stageRoot) path(v any) (string, error) {
	p, ok := v.(string)
	if !ok || p == "" {
		return "", Fail(ClassToolError, "stage: want the path git.stage returned")
	}
	root, err := s.root()
	if err != nil {
		return "", Fail(ClassSandbox, "stage directory: %v", err)
	}
	if !filepath.IsAbs(p) || filepath.Dir(filepath.Clean(p)) != root || !strings.HasPrefix(filepath.Base(p), "stage-") {
		return "", Fail(ClassToolError, "stage %q is not a stage this server made", p)
	}
	return filepath.Clean(p), nil
}

// resolve is path for a stage that must exist.
func (s *stageRoot) resolve(v any) (string, error) {
	p, err := s.path(v)
	if err != nil {
		return "", err
	}
	if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
		return "", Fail(ClassToolError, "stage %q does not exist (discarded?)", p)
	}
	return p, nil
}

// close removes the root when the registry made it, with every stage left
// in it.
func (s *stageRoot) close(git string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.made || s.real == "" {
		return nil
	}
	entries, _ := os.ReadDir(s.real)
	for _, e := range entries {
		if git != "" {
			g := &gitRunner{git: git}
			g.remove(context.Background(), filepath.Join(s.real, e.Name()), nil)
		}
	}
	return os.RemoveAll(s.real)
}

// gitRunner runs git with no user or system configuration, no hooks and
// no prompts.
type gitRunner struct {
	git  string
	path string // the server's PATH, for git's helpers
}

func (g *gitRunner) run(ctx context.Context, dir string, env []string, stdin []byte, args ...string) (string, error) {
	full := append([]string{"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false",
		"-c", "core.autocrlf=false", "-c", "gc.auto=0"}, args...)
	cmd := exec.Command(g.git, full...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + g.path, "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0", "HOME=/nonexistent"}, env...)
	out := runGroup(ctx, cmd, stdin, maxGitOutput)
	switch {
	case out.startErr != nil:
		return "", Fail(ClassTransport, "cannot start git: %v", out.startErr)
	case out.overflow != "":
		return "", Fail(ClassSandbox, "git %s: %s exceeds %d bytes", args[0], out.overflow, maxGitOutput)
	case out.timedOut:
		return "", Fail(ClassTimeout, "git %s did not finish in time", args[0])
	case out.cancelled:
		return "", Fail(ClassTransport, "the call was cancelled during git %s", args[0])
	case out.exitCode != 0:
		return string(out.stdout), &gitError{exit: out.exitCode, Failure: Fail(ClassToolError, "git %s: %s", args[0], strings.TrimSpace(tail(out.stderr, maxGitMessage)))}
	}
	return string(out.stdout), nil
}

// gitError is git exiting non-zero; the exit status lets callers tell
// "no" (exit 1 of a query) from failure.
type gitError struct {
	exit int
	*Failure
}

func (e *gitError) Unwrap() error { return e.Failure }

// failure returns err as the *Failure Invoke reports.
func failure(err error) error {
	var ge *gitError
	if errors.As(err, &ge) {
		return ge.Failure
	}
	return err
}

// remove deletes a stage: through git when it is a worktree, then
// whatever is left, then prunes repos' worktree lists.
func (g *gitRunner) remove(ctx context.Context, dir string, repos []string) error {
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		if common, err := g.run(ctx, dir, nil, nil, "rev-parse", "--path-format=absolute", "--git-common-dir"); err == nil {
			repos = append(repos, strings.TrimSpace(common))
		}
		_, _ = g.run(ctx, dir, nil, nil, "worktree", "remove", "--force", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return Fail(ClassToolError, "cannot remove the stage: %v", err)
	}
	for _, r := range repos {
		if _, err := g.run(ctx, r, nil, nil, "worktree", "prune"); err != nil {
			return failure(err)
		}
	}
	return nil
}

// gitExecutor is one of the builtins git.stage, git.commit, git.discard.
type gitExecutor struct {
	t      *Tool
	g      *gitRunner
	repos  []string // every repository a stage may come from, for pruning
	stages *stageRoot
	log    *zap.Logger
}

func newGit(t *Tool, res *resolved, repos []string, stages *stageRoot, o Options) Executor {
	return &gitExecutor{t: t, g: &gitRunner{git: res.git, path: o.Getenv("PATH")}, repos: repos, stages: stages, log: o.Log}
}

func (e *gitExecutor) Close() error { return nil }

func (e *gitExecutor) Invoke(ctx context.Context, c Call) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, e.t.Timeout)
	defer cancel()
	var (
		v   any
		err error
	)
	switch e.t.Builtin {
	case "git.stage":
		v, err = e.stage(ctx, c)
	case "git.commit":
		v, err = e.commit(ctx, c)
	default:
		v, err = e.discard(ctx, c)
	}
	if err != nil {
		return nil, failure(err)
	}
	return v, nil
}

// stringArg returns a required string argument.
func stringArg(args map[string]any, name string) (string, error) {
	s, ok := args[name].(string)
	if !ok || s == "" {
		return "", Fail(ClassToolError, "argument %s: want a non-empty string", name)
	}
	return s, nil
}

// stage makes a worktree of the repository at base_ref and applies the
// patch to it and its index. The stage's name comes from the idempotency
// key, so a repeated call finds the stage it made.
func (e *gitExecutor) stage(ctx context.Context, c Call) (any, error) {
	name, err := stringArg(c.Arguments, "repository")
	if err != nil {
		return nil, err
	}
	repo, ok := e.t.Git.Repositories[name]
	if !ok {
		names := make([]string, 0, len(e.t.Git.Repositories))
		for n := range e.t.Git.Repositories {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, Fail(ClassToolError, "unknown repository %q (this tool knows %s)", name, strings.Join(names, ", "))
	}
	base, err := stringArg(c.Arguments, "base_ref")
	if err != nil {
		return nil, err
	}
	if !validRef(base) {
		return nil, Fail(ClassToolError, "base_ref %q is not a commit id or reference name", base)
	}
	patch, err := stringArg(c.Arguments, "patch")
	if err != nil {
		return nil, err
	}
	if len(patch) > maxPatchBytes {
		return nil, Fail(ClassToolError, "patch: larger than %d bytes", maxPatchBytes)
	}
	root, err := e.stages.root()
	if err != nil {
		return nil, Fail(ClassSandbox, "stage directory: %v", err)
	}
	sum, err := e.g.run(ctx, repo, nil, nil, "rev-parse", "--verify", "--quiet", "--end-of-options", base+"^{commit}")
	if err != nil {
		return nil, Fail(ClassToolError, "base_ref %q does not name a commit in %s", base, name)
	}
	sum = strings.TrimSpace(sum)

	var dir string
	if c.IdempotencyKey != "" {
		h := sha256.Sum256([]byte(c.IdempotencyKey))
		dir = filepath.Join(root, "stage-"+hex.EncodeToString(h[:12]))
		if m, _, err := e.meta(ctx, dir); err == nil && m.Repository == name && m.Base == sum {
			return e.stageResult(ctx, dir)
		}
		// Absent, or left half made by a crash: start again.
		if err := e.g.remove(ctx, dir, []string{repo}); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp(root, "stage-")
		if err != nil {
			return nil, Fail(ClassSandbox, "cannot make a stage: %v", err)
		}
		os.Remove(d) // git worktree add wants to make it
		dir = d
	}
	if _, err := e.g.run(ctx, repo, nil, nil, "worktree", "add", "--detach", "--quiet", dir, sum); err != nil {
		e.g.remove(context.WithoutCancel(ctx), dir, []string{repo})
		return nil, err
	}
	if _, err := e.g.run(ctx, dir, nil, []byte(patch), "apply", "--index", "--whitespace=nowarn", "-"); err != nil {
		e.g.remove(context.WithoutCancel(ctx), dir, []string{repo})
		var ge *gitError
		if errors.As(err, &ge) {
			return nil, Fail(ClassToolError, "the patch does not apply: %s", strings.TrimPrefix(ge.Detail, "git apply: "))
		}
		return nil, err
	}
	if err := e.writeMeta(ctx, dir, stageMeta{Repository: name, Base: sum}); err != nil {
		e.g.remove(context.WithoutCancel(ctx), dir, []string{repo})
		return nil, err
	}
	return e.stageResult(ctx, dir)
}

// stageResult reports a stage and the paths its index changes against its
// base, as git reads them.
func (e *gitExecutor) stageResult(ctx context.Context, dir string) (any, error) {
	out, err := e.g.run(ctx, dir, nil, nil, "diff", "--cached", "--name-only", "-z", "--no-renames")
	if err != nil {
		return nil, err
	}
	paths := []any{}
	for _, p := range strings.Split(out, "\x00") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return map[string]any{"stage": dir, "changed_paths": paths}, nil
}

// meta reads a stage's record and the path of its administrative directory.
func (e *gitExecutor) meta(ctx context.Context, dir string) (stageMeta, string, error) {
	var m stageMeta
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err != nil {
		return m, "", Fail(ClassToolError, "%s is not a stage", dir)
	}
	admin, err := e.g.run(ctx, dir, nil, nil, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return m, "", err
	}
	admin = strings.TrimSpace(admin)
	b, err := os.ReadFile(filepath.Join(admin, stageMetaFile))
	if err != nil {
		return m, admin, Fail(ClassToolError, "%s is not a complete stage", dir)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Base == "" {
		return m, admin, Fail(ClassToolError, "%s has a damaged stage record", dir)
	}
	return m, admin, nil
}

func (e *gitExecutor) writeMeta(ctx context.Context, dir string, m stageMeta) error {
	admin, err := e.g.run(ctx, dir, nil, nil, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	tmp := filepath.Join(strings.TrimSpace(admin), stageMetaFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return Fail(ClassToolError, "cannot record the stage: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(strings.TrimSpace(admin), stageMetaFile)); err != nil {
		return Fail(ClassToolError, "cannot record the stage: %v", err)
	}
	return nil
}

// commit commits the stage's index on its detached HEAD, with a fixed
// identity and the base commit's date, so that the same stage and message
// always make the same commit, and then creates branch there. No existing
// ref moves.
func (e *gitExecutor) commit(ctx context.Context, c Call) (any, error) {
	dir, err := e.stages.resolve(c.Arguments["stage"])
	if err != nil {
		return nil, err
	}
	msg, err := stringArg(c.Arguments, "message")
	if err != nil {
		return nil, err
	}
	if len(msg) > maxMessageBytes || strings.ContainsRune(msg, 0) {
		return nil, Fail(ClassToolError, "message: at most %d bytes, no NUL", maxMessageBytes)
	}
	branch, err := stringArg(c.Arguments, "branch")
	if err != nil {
		return nil, err
	}
	if !validRef(branch) || hexRef.MatchString(branch) || branch == "HEAD" {
		return nil, Fail(ClassToolError, "branch %q is not a valid new branch name", branch)
	}
	ref := "refs/heads/" + branch
	if _, err := e.g.run(ctx, dir, nil, nil, "check-ref-format", ref); err != nil {
		return nil, Fail(ClassToolError, "branch %q is not a valid branch name", branch)
	}
	m, _, err := e.meta(ctx, dir)
	if err != nil {
		return nil, err
	}
	head, err := e.g.run(ctx, dir, nil, nil, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return nil, err
	}
	head = strings.TrimSpace(head)
	existing, err := e.g.run(ctx, dir, nil, nil, "rev-parse", "--verify", "--quiet", ref)
	var ge *gitError
	if err != nil && !(errors.As(err, &ge) && ge.exit == 1) {
		return nil, failure(err)
	}
	existing = strings.TrimSpace(existing)

	if head != m.Base { // committed already: by this call before a crash, or by another
		if m.CommitKey == "" || m.CommitKey != c.IdempotencyKey {
			return nil, Fail(ClassToolError, "the stage was already committed by another call")
		}
	} else {
		if existing != "" {
			return nil, Fail(ClassToolError, "branch %q already exists", branch)
		}
		if _, err := e.g.run(ctx, dir, nil, nil, "diff", "--cached", "--quiet"); err == nil {
			return nil, Fail(ClassToolError, "the stage holds no change to commit")
		} else if !errors.As(err, &ge) || ge.exit != 1 {
			return nil, failure(err)
		}
		m.CommitKey = c.IdempotencyKey
		if err := e.writeMeta(ctx, dir, m); err != nil { // the intent, before the commit
			return nil, err
		}
		date, err := e.g.run(ctx, dir, nil, nil, "log", "-1", "--format=%ct", m.Base)
		if err != nil {
			return nil, err
		}
		when := "@" + strings.TrimSpace(date) + " +0000"
		id := e.t.Git
		env := []string{"GIT_AUTHOR_NAME=" + id.AuthorName, "GIT_AUTHOR_EMAIL=" + id.AuthorEmail, "GIT_AUTHOR_DATE=" + when,
			"GIT_COMMITTER_NAME=" + id.AuthorName, "GIT_COMMITTER_EMAIL=" + id.AuthorEmail, "GIT_COMMITTER_DATE=" + when}
		if _, err := e.g.run(ctx, dir, env, []byte(msg), "commit", "--quiet", "--no-verify", "--cleanup=strip", "-F", "-"); err != nil {
			return nil, err
		}
		if head, err = e.g.run(ctx, dir, nil, nil, "rev-parse", "--verify", "HEAD"); err != nil {
			return nil, err
		}
		head = strings.TrimSpace(head)
	}
	switch existing {
	case head: // this call made it before a crash
	case "":
		// An empty old value: update-ref refuses if the branch appeared meanwhile.
		if _, err := e.g.run(ctx, dir, nil, nil, "update-ref", "--no-deref", ref, head, ""); err != nil {
			return nil, err
		}
	default:
		return nil, Fail(ClassToolError, "branch %q already exists", branch)
	}
	return map[string]any{"commit": head, "branch": branch}, nil
}

// discard removes a stage; one that is already gone is success.
func (e *gitExecutor) discard(ctx context.Context, c Call) (any, error) {
	dir, err := e.stages.path(c.Arguments["stage"])
	if err != nil {
		return nil, err
	}
	_, statErr := os.Lstat(dir)
	if err := e.g.remove(ctx, dir, e.repos); err != nil {
		return nil, err
	}
	return map[string]any{"stage": dir, "removed": statErr == nil}, nil
}

// SweepStages removes the stages last modified before the given time,
// through git (the worktree is removed and every repository's worktree
// list pruned), and returns their paths. A stage is removed by its run's
// git.discard on every path the program declares; what a run leaves
// behind when it ends another way (cancelled, out of steps, a discard
// that failed) only a sweep removes. The caller chooses the age: older
// than the longest time a live run holds a stage, since a swept stage's
// later commit fails (as a tool error).
func (r *Registry) SweepStages(ctx context.Context, before time.Time) ([]string, error) {
	git := r.gitBinary()
	if git == "" {
		return nil, errors.New("the registry has no git builtin, so it makes no stages")
	}
	root, err := r.stages.root()
	if err != nil {
		return nil, fmt.Errorf("stage directory: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("stage directory: %w", err)
	}
	g := &gitRunner{git: git}
	var swept []string
	for _, e := range entries {
		info, err := e.Info()
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "stage-") || err != nil || !info.ModTime().Before(before) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if err := g.remove(ctx, dir, r.repositories()); err != nil {
			return swept, fmt.Errorf("stage %s: %w", dir, err)
		}
		swept = append(swept, dir)
	}
	return swept, nil
}
