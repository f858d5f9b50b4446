package access

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultReloadInterval is how often serve checks the approvers and agent
// tokens files for changes.
const DefaultReloadInterval = 5 * time.Second

// racyWindow is how close to its last read a file's modification time may
// be for the file to be read again even though its size and modification
// time look unchanged: a file system with coarse timestamps (one or two
// seconds) gives a file rewritten at the same size within that time the
// same modification time.
const racyWindow = 2 * time.Second

// Reloader keeps the approvers file and the agent tokens file in force
// while the server runs. Each is loaded once at start, where an invalid
// file stops the start; then Check, on every tick of Run, puts a changed
// file in force. A file is read again when its size or modification time
// changed (or when it was last read within racyWindow of its modification
// time), and parsed only when the SHA-256 of its content changed. A file
// that is missing, unreadable, invalid, or that gives a principal an id or
// a token already held by the other file or by a static token, is not put
// in force: the previous contents stay, and the error, naming the file and
// line, is logged once.
//
// Approvers and Tokens return live lists: the guard and the tool handlers
// hold them and see each reload.
type Reloader struct {
	log *zap.Logger
	now func() time.Time

	mu        sync.Mutex // serialises loads, so the cross-file checks see the file in force
	files     []*watchedFile
	approvers *Approvers
	tokens    *Tokens
	reserved  []reservedToken
}

// watchedFile is one credentials file and what was last seen of it.
type watchedFile struct {
	path    string
	size    int64
	mod     time.Time
	readAt  time.Time
	sum     [sha256.Size]byte // of the content in force
	lastErr string            // the error last logged, so that it is logged once
	entries int               // in force
	parse   func(name string, data []byte) (*credSet, error)
	other   func() *credSet // the other file's contents in force
	install func(*credSet)
}

// NewReloader returns a Reloader that logs to log (nil: nowhere) and takes
// the time from now (nil: time.Now).
func NewReloader(log *zap.Logger, now func() time.Time) *Reloader {
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	return &Reloader{log: log, now: now}
}

// Reserve names a static token, such as the access or the operator token,
// that no entry of either file may hold after a reload. what names it in
// messages ("the access token"). An empty token is ignored. At start,
// [HTTPConfig.Validate] checks the same.
func (r *Reloader) Reserve(what, token string) {
	if token == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reserved = append(r.reserved, reservedToken{what: what, sum: sha256.Sum256([]byte(token))})
}

// Approvers loads the approvers file at path (see [ParseApprovers]) and
// keeps it in force.
func (r *Reloader) Approvers(path string) (*Approvers, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := &Approvers{}
	err := r.watch("approvers", path, r.approvers != nil, parseApprovers, a.set.Store, func() *credSet { return r.tokens.current() })
	if err != nil {
		return nil, err
	}
	r.approvers = a
	return a, nil
}

// Tokens loads the agent tokens file at path (see [ParseTokens]) and keeps
// it in force.
func (r *Reloader) Tokens(path string) (*Tokens, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &Tokens{}
	err := r.watch("tokens", path, r.tokens != nil, parseTokens, t.set.Store, func() *credSet { return r.approvers.current() })
	if err != nil {
		return nil, err
	}
	r.tokens = t
	return t, nil
}

// watch loads a file for the first time and watches it. The other file
// may be loaded later, so other looks it up on every load.
func (r *Reloader) watch(what, path string, loaded bool, parse func(string, []byte) (*credSet, error), install func(*credSet), other func() *credSet) error {
	if loaded {
		return fmt.Errorf("load %s: already loaded", what)
	}
	f := &watchedFile{path: path, parse: parse, install: install, other: other}
	if _, err := r.read(f, true); err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	r.files = append(r.files, f)
	return nil
}

// Check reloads every file that changed since the last check. Run calls it
// on every tick; tests call it directly. A file whose last reload failed is
// read on every check, so that it is put in force as soon as it is valid,
// and consistent with the other file.
func (r *Reloader) Check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			r.failed(f, err)
			continue
		}
		if f.lastErr == "" && fi.Size() == f.size && fi.ModTime().Equal(f.mod) && f.readAt.Sub(f.mod) > racyWindow {
			continue
		}
		changed, err := r.read(f, false)
		if err != nil {
			r.failed(f, err)
			continue
		}
		f.lastErr = ""
		if changed {
			r.log.Info("credentials file reloaded", zap.String("file", f.path), zap.Int("entries", f.entries))
		}
	}
}

// read reads f and, unless its content is the one in force, parses and
// checks it and puts it in force. It reports whether it did.
func (r *Reloader) read(f *watchedFile, first bool) (bool, error) {
	readAt := r.now()
	data, fi, err := readCredFile(f.path)
	if err != nil {
		return false, err
	}
	f.size, f.mod, f.readAt = fi.Size(), fi.ModTime(), readAt
	sum := sha256.Sum256(data)
	if !first && sum == f.sum {
		return false, nil
	}
	s, err := f.parse(f.path, data)
	if err == nil {
		err = disjoint(s, f.other())
	}
	if err == nil {
		err = notReserved(s, r.reserved)
	}
	if err != nil {
		return false, err
	}
	if perm := fi.Mode().Perm(); readableByOthers(perm) {
		r.log.Warn("credentials file readable by other users: its token hashes let them test guessed tokens offline; run chmod 600 (or 640 for a service group)",
			zap.String("file", f.path), zap.String("mode", fmt.Sprintf("%#o", perm)))
	}
	f.install(s)
	f.sum, f.entries = sum, s.len()
	return true, nil
}

// failed logs a reload that left the previous contents in force, once per
// distinct error.
func (r *Reloader) failed(f *watchedFile, err error) {
	if msg := err.Error(); msg != f.lastErr {
		f.lastErr = msg
		r.log.Error("credentials file not reloaded: the previous contents stay in force", zap.String("file", f.path), zap.Error(err))
	}
}

// Run calls Check on every tick until ctx ends.
func (r *Reloader) Run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			r.Check()
		}
	}
}
