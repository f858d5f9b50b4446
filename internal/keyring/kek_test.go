package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func newKEK(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// mustAdd adds a fresh KEK under id and returns it.
func mustAdd(t *testing.T, k *KEKs, id KEKID) []byte {
	t.Helper()
	key := newKEK(t)
	if err := k.Add(id, key); err != nil {
		t.Fatalf("Add %v: %v", id, err)
	}
	return key
}

func TestKEKFileRoundTrips(t *testing.T) {
	dir := t.TempDir()
	k, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, KEKFile)); !os.IsNotExist(err) {
		t.Fatalf("opening created the file: %v", err)
	}
	if n := k.Newest("a"); n != 0 {
		t.Fatalf("Newest of an empty set is %d", n)
	}
	want := map[KEKID][]byte{}
	for _, id := range []KEKID{{"a", 1}, {"a", 7}, {"b", 3}} {
		want[id] = mustAdd(t, k, id)
	}
	fi, err := os.Stat(filepath.Join(dir, KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", KEKFile, fi.Mode().Perm())
	}
	again, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for id, key := range want {
		got, err := again.Get(id)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("Get %v after reopening: %x, %v; want %x", id, got, err, key)
		}
	}
	if again.Newest("a") != 7 || again.Newest("b") != 3 || again.Newest("c") != 0 {
		t.Errorf("Newest: a %d, b %d, c %d; want 7, 3, 0", again.Newest("a"), again.Newest("b"), again.Newest("c"))
	}
	if _, err := again.Get(KEKID{"a", 2}); err == nil || !strings.Contains(err.Error(), KEKFile) {
		t.Errorf("Get of a missing epoch: %v, want an error naming %s", err, KEKFile)
	}
	// The format: a header, then one sorted line per KEK.
	b, _ := os.ReadFile(filepath.Join(dir, KEKFile))
	wantText := kekHeader + "\n" +
		"a 1 " + base64.StdEncoding.EncodeToString(want[KEKID{"a", 1}]) + "\n" +
		"a 7 " + base64.StdEncoding.EncodeToString(want[KEKID{"a", 7}]) + "\n" +
		"b 3 " + base64.StdEncoding.EncodeToString(want[KEKID{"b", 3}]) + "\n"
	if string(b) != wantText {
		t.Errorf("file:\n%s\nwant:\n%s", b, wantText)
	}
}

func TestKEKFileRejectsWhatItDidNotWrite(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	for name, text := range map[string]string{
		"empty":         "",
		"no header":     "a 1 " + key + "\n",
		"other header":  "nano-vm-mcp subject key-encryption keys v2\n",
		"two fields":    kekHeader + "\na " + key + "\n",
		"epoch zero":    kekHeader + "\na 0 " + key + "\n",
		"epoch not int": kekHeader + "\na x " + key + "\n",
		"not base64":    kekHeader + "\na 1 !!!!\n",
		"short key":     kekHeader + "\na 1 " + base64.StdEncoding.EncodeToString([]byte("short")) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, KEKFile), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenKEKs(dir); err == nil {
				t.Fatal("opened")
			}
		})
	}
}

func TestMemoryKEKsNeverTouchTheDisk(t *testing.T) {
	k := MemoryKEKs()
	key := mustAdd(t, k, KEKID{"a", 1})
	mustAdd(t, k, KEKID{"a", 2})
	if got, err := k.Get(KEKID{"a", 1}); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Get: %v", err)
	}
	if err := k.Retain(KEKID{"a", 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(KEKID{"a", 1}); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("a retired memory KEK: %v", err)
	}
	unlock, err := k.Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// TestRetainKeepsOtherStoresKEKs: one data directory may serve an SQLite
// and a PostgreSQL store; erasing in one must not destroy the other's.
func TestRetainKeepsOtherStoresKEKs(t *testing.T) {
	dir := t.TempDir()
	k, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	a1 := mustAdd(t, k, KEKID{"a", 1})
	a2 := mustAdd(t, k, KEKID{"a", 2})
	b1 := mustAdd(t, k, KEKID{"b", 1})
	b2 := mustAdd(t, k, KEKID{"b", 2})
	if err := k.Retain(KEKID{"a", 2}); err != nil {
		t.Fatal(err)
	}
	if err := k.Retain(KEKID{"a", 9}); err == nil {
		t.Fatal("Retain of an epoch not held succeeded")
	}
	fresh, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []*KEKs{k, fresh} {
		if _, err := set.Get(KEKID{"a", 1}); err == nil {
			t.Error("store a's old epoch survived Retain")
		}
		for id, key := range map[KEKID][]byte{{"a", 2}: a2, {"b", 1}: b1, {"b", 2}: b2} {
			if got, err := set.Get(id); err != nil || !bytes.Equal(got, key) {
				t.Errorf("Get %v: %v", id, err)
			}
		}
	}
	text, _ := os.ReadFile(filepath.Join(dir, KEKFile))
	if bytes.Contains(text, []byte(base64.StdEncoding.EncodeToString(a1))) {
		t.Error("the destroyed KEK is still in the file")
	}
}

// TestKEKReplaceShredsTheOldFile: the file that held a destroyed KEK is
// overwritten with zeros, not only unlinked. A hard link taken before
// keeps the old inode reachable, to look at.
func TestKEKReplaceShredsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	k, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := mustAdd(t, k, KEKID{"s", 1})
	mustAdd(t, k, KEKID{"s", 2})
	path := filepath.Join(dir, KEKFile)
	link := filepath.Join(t.TempDir(), "old-inode")
	if err := os.Link(path, link); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	before, _ := os.ReadFile(link)
	if !bytes.Contains(before, []byte(base64.StdEncoding.EncodeToString(old))) {
		t.Fatal("the link does not hold the KEK to destroy")
	}
	if err := k.Retain(KEKID{"s", 2}); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("the old file is %d bytes, was %d", len(after), len(before))
	}
	if i := bytes.IndexFunc(after, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("the old file's byte %d is not zero: %q", i, after)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(old))) || bytes.Contains(b, old) {
			t.Errorf("%s still holds the destroyed KEK", e.Name())
		}
		if e.Name() != KEKFile && e.Name() != KEKFile+".lock" {
			t.Errorf("%s left in the directory", e.Name())
		}
	}
}

// TestKEKFileIsAlwaysParseable: a reader (another process starting) never
// sees a half-written file while the set changes, nor trips on the old
// file being shredded under it, and a temporary file left by a crash
// neither stops opening nor survives the next change.
func TestKEKFileIsAlwaysParseable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KEKFile)
	k, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, k, KEKID{"s", 1})
	mustAdd(t, k, KEKID{"other", 1})
	// A crash between writing the new file and renaming it.
	if err := os.WriteFile(path+".new", []byte(kekHeader+"\ns 2 trunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKEKs(dir); err != nil {
		t.Fatalf("a stale temporary file stops opening: %v", err)
	}
	done := make(chan struct{})
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for reads := 0; ; reads++ {
			select {
			case <-done:
				return
			default:
			}
			set, err := OpenKEKs(dir)
			if err == nil && (len(set.epochs) < 2 || len(set.epochs) > 3) {
				err = fmt.Errorf("read %d: %d KEKs, want 2 or 3", reads, len(set.epochs))
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for e := uint64(2); e < 60; e++ {
		mustAdd(t, k, KEKID{"s", e})
		if err := k.Retain(KEKID{"s", e}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a reader saw a broken file: %v", err)
	default:
	}
	if _, err := os.Stat(path + ".new"); !os.IsNotExist(err) {
		t.Errorf("the temporary file survived: %v", err)
	}
	fresh, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Newest("s") != 59 || fresh.Newest("other") != 1 {
		t.Fatalf("after the changes: s at %d, other at %d", fresh.Newest("s"), fresh.Newest("other"))
	}
}

// TestKEKGetRereadsWhatAnotherProcessAdded: a second set over the same
// directory (another server process) finds a KEK the first one added after
// it opened the file.
func TestKEKGetRereadsWhatAnotherProcessAdded(t *testing.T) {
	dir := t.TempDir()
	k1, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, k1, KEKID{"s", 1})
	k2, err := OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	key2 := mustAdd(t, k1, KEKID{"s", 2})
	if err := k1.Retain(KEKID{"s", 2}); err != nil {
		t.Fatal(err)
	}
	if k2.Newest("s") != 1 {
		t.Fatalf("k2 saw epoch %d before rereading", k2.Newest("s"))
	}
	got, err := k2.Get(KEKID{"s", 2})
	if err != nil || !bytes.Equal(got, key2) {
		t.Fatalf("k2.Get of the epoch k1 added: %v", err)
	}
	if k2.Newest("s") != 2 {
		t.Fatalf("after rereading, k2's newest is %d", k2.Newest("s"))
	}
	if _, err := k2.Get(KEKID{"s", 1}); err == nil {
		t.Fatal("k2 still holds the epoch k1 destroyed after rereading")
	}
}

// TestKEKChangesKeepWhatAnotherProcessWrote: a set whose memory is behind the
// file (another process rotated since) must change the file as it is, not
// as it remembers it: neither drop the other process's new KEK (every key
// in the store is wrapped under it) nor write back the KEK it destroyed.
func TestKEKChangesKeepWhatAnotherProcessWrote(t *testing.T) {
	for _, change := range []string{"Add", "Retain"} {
		t.Run(change, func(t *testing.T) {
			dir := t.TempDir()
			k1, err := OpenKEKs(dir)
			if err != nil {
				t.Fatal(err)
			}
			s1 := mustAdd(t, k1, KEKID{"s", 1})
			mustAdd(t, k1, KEKID{"t", 1})
			k2, err := OpenKEKs(dir) // remembers s 1 and t 1
			if err != nil {
				t.Fatal(err)
			}
			s2 := mustAdd(t, k1, KEKID{"s", 2})
			if err := k1.Retain(KEKID{"s", 2}); err != nil {
				t.Fatal(err)
			}
			switch change {
			case "Add":
				mustAdd(t, k2, KEKID{"t", 2})
			case "Retain":
				if err := k2.Retain(KEKID{"t", 1}); err != nil {
					t.Fatal(err)
				}
			}
			fresh, err := OpenKEKs(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := fresh.Get(KEKID{"s", 2}); err != nil || !bytes.Equal(got, s2) {
				t.Fatalf("the other process's current KEK was lost: %v", err)
			}
			text, _ := os.ReadFile(filepath.Join(dir, KEKFile))
			if bytes.Contains(text, []byte(base64.StdEncoding.EncodeToString(s1))) {
				t.Fatal("the KEK the other process destroyed was written back")
			}
		})
	}
}

// TestKEKGetReturnsACopy: the set zeroes a KEK it destroys; a caller still
// using one it got must not see it change under it.
func TestKEKGetReturnsACopy(t *testing.T) {
	k, err := OpenKEKs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := mustAdd(t, k, KEKID{"s", 1})
	got, err := k.Get(KEKID{"s", 1})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, k, KEKID{"s", 2})
	if err := k.Retain(KEKID{"s", 2}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("a KEK handed out was zeroed under its user")
	}
}

func flockWorks() bool {
	switch runtime.GOOS {
	case "windows", "plan9", "js", "wasip1":
		return false
	}
	return true
}

// TestKEKLockSerialisesProcesses: two sets over one directory (two processes:
// flock locks belong to open files, so two sets in one process contend as
// two processes do) never hold the lock at once. Each increments a counter
// kept in a file, read and written separately; none is lost.
func TestKEKLockSerialisesProcesses(t *testing.T) {
	if !flockWorks() {
		t.Skip("no flock here")
	}
	dir := t.TempDir()
	counter := filepath.Join(dir, "counter")
	if err := os.WriteFile(counter, []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	const rounds = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		k, err := OpenKEKs(dir)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				unlock, err := k.Lock()
				if err != nil {
					errs <- err
					return
				}
				b, err := os.ReadFile(counter)
				n, _ := strconv.Atoi(string(b))
				if err == nil {
					runtime.Gosched()
					err = os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o600)
				}
				unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(counter)
	if string(b) != strconv.Itoa(2*rounds) {
		t.Fatalf("counter %s, want %d: the lock let two holders in", b, 2*rounds)
	}
	// While one set holds the lock, the other's Lock waits.
	k1, _ := OpenKEKs(dir)
	k2, _ := OpenKEKs(dir)
	unlock1, err := k1.Lock()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		unlock2, err := k2.Lock()
		if err != nil {
			t.Error(err)
			unlock2 = func() {}
		}
		got <- unlock2
	}()
	mustAdd(t, k1, KEKID{"s", 1}) // work under the lock
	select {
	case <-got:
		t.Fatal("the second set took the lock while the first held it")
	default:
	}
	unlock1()
	(<-got)()
}
