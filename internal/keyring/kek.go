package keyring

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// KEKFile is the file, in the data directory, that holds the
// key-encryption keys wrapping the subject keys in the store.
const KEKFile = "subject.kek"

// kekHeader starts the file; each later line is "STORE EPOCH BASE64KEY".
const kekHeader = "nano-vm-mcp subject key-encryption keys v1"

// KEKID names a KEK: the store whose keys it wraps (a data directory may
// serve several stores: SQLite, and a PostgreSQL database, say), and the
// epoch.
type KEKID struct {
	Store string
	Epoch uint64
}

// KEKs are the key-encryption keys by epoch. They live outside the
// database on purpose: the database keeps stale copies of what it deletes
// (free pages, the WAL, dead tuples, backups), so a subject key deleted
// there is not gone. Every key the store holds is wrapped under the
// current epoch's KEK; erasing a subject deletes its key and re-wraps the
// others under a new epoch, and then destroys the old KEK, which leaves
// every stale copy of the erased key undecryptable.
//
// A file-backed set (OpenKEKs) writes each change to a new file renamed
// over the old one, and then overwrites the old file's bytes through a
// descriptor kept open across the rename, so that the destroyed KEK is
// left neither in the directory nor in the old file's blocks (on file
// systems that overwrite in place: see docs/erasure.md). A memory set
// (MemoryKEKs) is for stores that do not outlive the process.
type KEKs struct {
	path string // "" for a memory set

	mu     sync.Mutex
	epochs map[KEKID][]byte
	lockMu sync.Mutex // serialises Lock within the process
}

// MemoryKEKs returns an empty set that lives in memory only.
func MemoryKEKs() *KEKs { return &KEKs{epochs: map[KEKID][]byte{}} }

// OpenKEKs reads the set kept in dir (empty if the file does not exist
// yet). The file is created on the first Add.
func OpenKEKs(dir string) (*KEKs, error) {
	k := &KEKs{path: filepath.Join(dir, KEKFile), epochs: map[KEKID][]byte{}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload reads the file again: another process sharing the directory may
// have rotated. The KEKs it no longer holds are zeroed in memory.
func (k *KEKs) reload() error {
	if k.path == "" {
		return nil
	}
	var epochs map[KEKID][]byte
	for attempt := 0; ; attempt++ {
		b, err := os.ReadFile(k.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("keyring: %w", err)
		}
		if epochs, err = parseKEKs(b); err == nil {
			break
		}
		// A reader that opened the file just before another process
		// renamed a new one over it can read the old one while it is
		// being shredded (writeKEKs): zeros, which a file never holds.
		// The name leads to the new file by now.
		if bytes.IndexByte(b, 0) >= 0 && attempt < 3 {
			continue
		}
		return fmt.Errorf("keyring: %s: %w", k.path, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, v := range k.epochs {
		if _, kept := epochs[id]; !kept {
			clear(v)
		}
	}
	k.epochs = epochs
	return nil
}

func parseKEKs(b []byte) (map[KEKID][]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != kekHeader {
		return nil, errors.New("not a key-encryption key file")
	}
	out := map[KEKID][]byte{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, errors.New("a line is not STORE EPOCH KEY")
		}
		e, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || e == 0 {
			return nil, fmt.Errorf("store %s: bad epoch %q", f[0], f[1])
		}
		k, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("store %s epoch %d: not a base64 256-bit key", f[0], e)
		}
		out[KEKID{f[0], e}] = k
	}
	return out, sc.Err()
}

// Get returns (a copy of) the KEK id names, rereading the file once if
// this process has not seen it.
func (k *KEKs) Get(id KEKID) ([]byte, error) {
	if key := k.cached(id); key != nil {
		return key, nil
	}
	if err := k.reload(); err != nil {
		return nil, err
	}
	if key := k.cached(id); key != nil {
		return key, nil
	}
	where := "this process's memory"
	if k.path != "" {
		where = k.path
	}
	return nil, fmt.Errorf("keyring: the key-encryption key of store %s epoch %d is not in %s; every server sharing a store must share the data directory's %s", id.Store, id.Epoch, where, KEKFile)
}

// cached returns a copy: the set zeroes the KEKs it destroys, which must
// not change one under a caller still using it.
func (k *KEKs) cached(id KEKID) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.epochs[id])
}

// Newest is the highest epoch held for store, 0 if none.
func (k *KEKs) Newest(store string) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n uint64
	for id := range k.epochs {
		if id.Store == store {
			n = max(n, id.Epoch)
		}
	}
	return n
}

// Add keeps key as the KEK id names, durably, beside those already held.
// The caller holds Lock: the file is read again first, since another
// process may have changed it since this one last read it.
func (k *KEKs) Add(id KEKID, key []byte) error {
	if err := k.reload(); err != nil {
		return err
	}
	next := k.copyExcept(func(KEKID) bool { return false })
	next[id] = bytes.Clone(key)
	return k.replace(next)
}

// Retain destroys every KEK of id's store but id's. The caller holds Lock,
// as for Add.
func (k *KEKs) Retain(id KEKID) error {
	if err := k.reload(); err != nil {
		return err
	}
	if k.cached(id) == nil {
		return fmt.Errorf("keyring: no key-encryption key of store %s epoch %d to keep", id.Store, id.Epoch)
	}
	return k.replace(k.copyExcept(func(o KEKID) bool { return o.Store == id.Store && o != id }))
}

func (k *KEKs) copyExcept(drop func(KEKID) bool) map[KEKID][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[KEKID][]byte, len(k.epochs)+1)
	for id, v := range k.epochs {
		if !drop(id) {
			out[id] = v
		}
	}
	return out
}

// replace makes next the set, in the file first. The keys dropped are
// zeroed in memory too (copies the Go runtime made may remain until
// reused: see docs/erasure.md).
func (k *KEKs) replace(next map[KEKID][]byte) error {
	if k.path != "" {
		if err := writeKEKs(k.path, next); err != nil {
			return err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for e, v := range k.epochs {
		if _, kept := next[e]; !kept {
			clear(v)
		}
	}
	k.epochs = next
	return nil
}

// writeKEKs writes the set to a new file, syncs it, renames it over the
// old one, syncs the directory, and then overwrites and syncs the old
// file's bytes through a descriptor opened before the rename. A crash
// leaves either the old set or the new one, never neither.
func writeKEKs(path string, epochs map[KEKID][]byte) error {
	var b bytes.Buffer
	b.WriteString(kekHeader + "\n")
	order := make([]KEKID, 0, len(epochs))
	for id := range epochs {
		order = append(order, id)
	}
	slices.SortFunc(order, func(a, b KEKID) int {
		return cmp.Or(strings.Compare(a.Store, b.Store), cmp.Compare(a.Epoch, b.Epoch))
	})
	for _, id := range order {
		fmt.Fprintf(&b, "%s %d %s\n", id.Store, id.Epoch, base64.StdEncoding.EncodeToString(epochs[id]))
	}
	old, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyring: %w", err)
	}
	if old != nil {
		defer old.Close()
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("keyring: %w", err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	if old != nil {
		return shred(old)
	}
	return nil
}

// shred overwrites an unlinked file's bytes with zeros and syncs them.
func shred(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.WriteAt(make([]byte, st.Size()), 0); err != nil {
		return fmt.Errorf("keyring: shred: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keyring: shred: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keyring: sync %s: %w", dir, err)
	}
	return nil
}

// Lock serialises changes to the set among the processes sharing its
// directory (and within this one). Callers hold it from reading the
// store's epoch to the end of a rotation.
func (k *KEKs) Lock() (unlock func(), err error) {
	k.lockMu.Lock()
	if k.path == "" {
		return k.lockMu.Unlock, nil
	}
	release, err := lockFile(k.path + ".lock")
	if err != nil {
		k.lockMu.Unlock()
		return nil, err
	}
	return func() { release(); k.lockMu.Unlock() }, nil
}
