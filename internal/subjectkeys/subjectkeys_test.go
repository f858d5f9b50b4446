package subjectkeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

func read(b []byte) error { _, err := io.ReadFull(rand.Reader, b); return err }

// process is one server process's view of a shared store: its own store
// handle, KEK set and Keys.
type process struct {
	store tracestore.Store
	keks  *keyring.KEKs
	keys  *Keys
}

// backend makes a shared store and returns a function that starts a new
// process on it. dir is the data directory ("" for memory).
type backend struct {
	name  string
	setup func(t *testing.T) (start func() *process, dir string)
}

var backends = []backend{
	{"memory", func(t *testing.T) (func() *process, string) {
		// A memory store lives in one process: its "processes" share the
		// store and the KEK set, as the runtime's Services over it do.
		store, keks := tracestore.NewMemory(), keyring.MemoryKEKs()
		return func() *process { return &process{store, keks, New(store, keks, read)} }, ""
	}},
	{"sqlite", func(t *testing.T) (func() *process, string) {
		dir := t.TempDir()
		return func() *process {
			s, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return startOn(t, s, dir)
		}, dir
	}},
	{"postgres", func(t *testing.T) (func() *process, string) {
		dsn, dir := pgTestDSN(t), t.TempDir()
		return func() *process {
			s, err := tracestore.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return startOn(t, s, dir)
		}, dir
	}},
}

func startOn(t *testing.T, s tracestore.Store, dir string) *process {
	t.Helper()
	keks, err := keyring.OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &process{s, keks, New(s, keks, read)}
}

func forEachBackend(t *testing.T, test func(t *testing.T, start func() *process, dir string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			start, dir := b.setup(t)
			test(t, start, dir)
		})
	}
}

func mustGet(t *testing.T, k *Keys, subject string, create bool) []byte {
	t.Helper()
	key, err := k.Get(context.Background(), subject, create)
	if err != nil {
		t.Fatalf("Get %s: %v", subject, err)
	}
	return key
}

func epochOf(t *testing.T, s tracestore.Store) tracestore.KeyState {
	t.Helper()
	st, err := s.KeyEpoch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// onlyEpochHeld checks, in a fresh read of the data directory, that the
// store's one KEK is that of its current epoch.
func onlyEpochHeld(t *testing.T, p *process, dir string) {
	t.Helper()
	st := epochOf(t, p.store)
	keks := p.keks
	if dir != "" {
		var err error
		if keks, err = keyring.OpenKEKs(dir); err != nil {
			t.Fatal(err)
		}
	}
	if n := keks.Newest(st.Store); n != st.Epoch {
		t.Fatalf("newest KEK held is epoch %d, the store is at %d", n, st.Epoch)
	}
	for e := uint64(1); e < st.Epoch; e++ {
		if _, err := keks.Get(keyring.KEKID{Store: st.Store, Epoch: e}); err == nil {
			t.Fatalf("the KEK of epoch %d survives; the store is at %d", e, st.Epoch)
		}
	}
}

func TestGetCreatesStableKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p := start()
		if key := mustGet(t, p.keys, "a", false); key != nil {
			t.Fatalf("a key that was never made: %x", key)
		}
		a := mustGet(t, p.keys, "a", true)
		b := mustGet(t, p.keys, "b", true)
		if len(a) != KeySize || bytes.Equal(a, b) {
			t.Fatalf("keys a %x, b %x", a, b)
		}
		if got := mustGet(t, p.keys, "a", true); !bytes.Equal(got, a) {
			t.Fatal("a second Get made another key")
		}
		other := start()
		if got := mustGet(t, other.keys, "a", false); !bytes.Equal(got, a) {
			t.Fatal("another process reads another key")
		}
		w, err := other.store.Key(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if w.Epoch == 0 || w.Epoch != epochOf(t, other.store).Epoch || bytes.Contains(w.Wrapped, a) {
			t.Fatalf("stored key: epoch %d (store's %d), wrapped %x", w.Epoch, epochOf(t, other.store).Epoch, w.Wrapped)
		}
		onlyEpochHeld(t, other, dir)
	})
}

func TestShredDestroysOnlyTheNamedKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p := start()
		keys := map[string][]byte{}
		for _, s := range []string{"a", "b", "c"} {
			keys[s] = mustGet(t, p.keys, s, true)
		}
		before := epochOf(t, p.store)
		deleted, err := p.keys.Shred(ctx, []string{"a", "never-made"})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(deleted) != "[a]" {
			t.Fatalf("Shred reported %v, want [a]", deleted)
		}
		after := epochOf(t, p.store)
		if after.Epoch <= before.Epoch || after.Store != before.Store {
			t.Fatalf("epoch %v after Shred, %v before", after, before)
		}
		for _, q := range []*process{p, start()} {
			if key := mustGet(t, q.keys, "a", false); key != nil {
				t.Fatal("the shredded key is still returned")
			}
			for _, s := range []string{"b", "c"} {
				if got := mustGet(t, q.keys, s, false); !bytes.Equal(got, keys[s]) {
					t.Fatalf("key %s changed or was lost by the rotation", s)
				}
			}
		}
		onlyEpochHeld(t, p, dir)

		// Twice: nothing left to delete, but it rotates again.
		deleted, err = p.keys.Shred(ctx, []string{"a"})
		if err != nil || len(deleted) != 0 {
			t.Fatalf("a second Shred: %v, %v", deleted, err)
		}
		if again := epochOf(t, p.store); again.Epoch <= after.Epoch {
			t.Fatalf("a second Shred left the epoch at %d", again.Epoch)
		}
		if got := mustGet(t, start().keys, "b", false); !bytes.Equal(got, keys["b"]) {
			t.Fatal("key b lost by the second rotation")
		}
		// A new key for an erased subject is a new key.
		if fresh := mustGet(t, p.keys, "a", true); fresh == nil || bytes.Equal(fresh, keys["a"]) {
			t.Fatal("a subject made again got its destroyed key back")
		}
		onlyEpochHeld(t, p, dir)
	})
}

// TestKeysAnotherProcessSeesTheRotation: a process that cached a key another
// process then erased drops it at its next Refresh, still reads the keys
// re-wrapped meanwhile, and can erase in turn.
func TestKeysAnotherProcessSeesTheRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p1, p2 := start(), start()
		a := mustGet(t, p1.keys, "a", true)
		b := mustGet(t, p1.keys, "b", true)
		c := mustGet(t, p1.keys, "c", true)
		if got := mustGet(t, p2.keys, "a", false); !bytes.Equal(got, a) {
			t.Fatal("p2 reads another key")
		}
		if changed, err := p2.keys.Refresh(ctx); err != nil || changed {
			t.Fatalf("Refresh with nothing changed: %v, %v", changed, err)
		}
		if _, err := p1.keys.Shred(ctx, []string{"a"}); err != nil {
			t.Fatal(err)
		}
		changed, err := p2.keys.Refresh(ctx)
		if err != nil || !changed {
			t.Fatalf("Refresh after another process's erasure: %v, %v", changed, err)
		}
		p2.keys.mu.Lock()
		left := len(p2.keys.cache)
		p2.keys.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d keys still cached after Refresh", left)
		}
		if key := mustGet(t, p2.keys, "a", false); key != nil {
			t.Fatal("p2 still returns the key p1 erased")
		}
		if got := mustGet(t, p2.keys, "b", false); !bytes.Equal(got, b) {
			t.Fatal("p2 lost key b")
		}
		if changed, err := p2.keys.Refresh(ctx); err != nil || changed {
			t.Fatalf("a second Refresh: %v, %v", changed, err)
		}
		// p2 erases next, its memory of the KEKs behind p1's rotation.
		if _, err := p2.keys.Shred(ctx, []string{"b"}); err != nil {
			t.Fatal(err)
		}
		if changed, err := p1.keys.Refresh(ctx); err != nil || !changed {
			t.Fatalf("p1's Refresh: %v, %v", changed, err)
		}
		for _, q := range []*process{p1, p2, start()} {
			if key := mustGet(t, q.keys, "b", false); key != nil {
				t.Fatal("the key p2 erased is still returned")
			}
			if got := mustGet(t, q.keys, "c", false); !bytes.Equal(got, c) {
				t.Fatal("key c lost after two processes erased in turn")
			}
		}
		onlyEpochHeld(t, p1, dir)
	})
}

// TestShredAfterAnotherProcessErasedDropsItsKeys: a process that erases
// before it refreshed must not keep the keys another process erased
// meanwhile, although its own rotation moves the epoch past the other's,
// which hides the move from a later Refresh.
func TestShredAfterAnotherProcessErasedDropsItsKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p1, p2 := start(), start()
		mustGet(t, p1.keys, "a", true)
		c := mustGet(t, p1.keys, "c", true)
		mustGet(t, p2.keys, "a", false) // cached in p2
		mustGet(t, p2.keys, "b", true)
		if _, err := p1.keys.Shred(ctx, []string{"a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := p2.keys.Shred(ctx, []string{"b"}); err != nil {
			t.Fatal(err)
		}
		if key := mustGet(t, p2.keys, "a", false); key != nil {
			t.Fatal("p2 still returns the key p1 erased before p2's own erasure")
		}
		if got := mustGet(t, p2.keys, "c", false); !bytes.Equal(got, c) {
			t.Fatal("key c lost")
		}
		// Its caller (the runtime's RefreshKeys) learns of it too, to drop
		// what it opened with the erased keys.
		if changed, err := p2.keys.Refresh(ctx); err != nil || !changed {
			t.Fatalf("p2's Refresh after its Shred found p1's: %v, %v", changed, err)
		}
		if changed, err := p2.keys.Refresh(ctx); err != nil || changed {
			t.Fatalf("p2's second Refresh: %v, %v", changed, err)
		}
	})
}

// keyHook runs a function once, right after the store has answered the
// first Key read of a subject: a rotation that lands between a Get's read
// and its use of what it read.
type keyHook struct {
	tracestore.Store
	subject string
	once    sync.Once
	run     func()
}

func (h *keyHook) Key(ctx context.Context, subject string) (tracestore.WrappedKey, error) {
	w, err := h.Store.Key(ctx, subject)
	if subject == h.subject {
		h.once.Do(h.run)
	}
	return w, err
}

// TestKeysGetReadsAgainWhenARotationRunsUnderIt: the key a Get read was
// wrapped under an epoch an erasure has destroyed by the time it opens it,
// or was itself erased. Get reads it again: it neither fails nor hands out
// (or caches) an erased key.
func TestKeysGetReadsAgainWhenARotationRunsUnderIt(t *testing.T) {
	for _, erase := range []string{"another subject", "the same subject"} {
		t.Run(strings.ReplaceAll(erase, " ", "_"), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
				ctx := context.Background()
				p := start()
				a := mustGet(t, p.keys, "a", true)
				mustGet(t, p.keys, "b", true)
				hooked := &keyHook{Store: p.store, subject: "a"}
				k := New(hooked, p.keks, read)
				mustGet(t, k, "b", false) // reconciled and ready
				victim, want := "b", a
				if erase == "the same subject" {
					victim, want = "a", nil
				}
				hooked.run = func() {
					if _, err := k.Shred(ctx, []string{victim}); err != nil {
						t.Errorf("Shred in the hook: %v", err)
					}
				}
				got, err := k.Get(ctx, "a", false)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Get across a rotation: %x, %v; want %x", got, err, want)
				}
				if got := mustGet(t, k, "a", false); !bytes.Equal(got, want) {
					t.Fatalf("Get after: %x, want %x", got, want)
				}
			})
		})
	}
}

// TestLegacyKeysAreWrappedAtFirstUse: keys an earlier version stored in
// clear (epoch 0) are wrapped when a process first uses the store, and
// read the same.
func TestLegacyKeysAreWrappedAtFirstUse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p := start()
		legacy := bytes.Repeat([]byte{0xab}, KeySize)
		if _, err := p.store.PutKey(ctx, tracestore.WrappedKey{Subject: "old", Wrapped: legacy}); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, p.keys, "old", false); !bytes.Equal(got, legacy) {
			t.Fatalf("the legacy key reads %x", got)
		}
		w, err := p.store.Key(ctx, "old")
		if err != nil {
			t.Fatal(err)
		}
		if w.Epoch == 0 || bytes.Contains(w.Wrapped, legacy) {
			t.Fatalf("the legacy key is still stored in clear: epoch %d, %x", w.Epoch, w.Wrapped)
		}
		if got := mustGet(t, start().keys, "old", false); !bytes.Equal(got, legacy) {
			t.Fatal("another process reads the wrapped legacy key differently")
		}
		onlyEpochHeld(t, p, dir)
	})
}

// TestKeysInterruptedRotationIsReconciled: a crash inside Shred leaves the KEK
// file a step ahead of the store (the new KEK saved, the transaction not
// committed) or the store a step ahead of the file (committed, the old KEK
// not destroyed yet). The next process to use the store finishes the job.
func TestKeysInterruptedRotationIsReconciled(t *testing.T) {
	for _, crash := range []string{"before commit", "before the old KEK is destroyed"} {
		t.Run(strings.ReplaceAll(crash, " ", "_"), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
				ctx := context.Background()
				p := start()
				a := mustGet(t, p.keys, "a", true)
				b := mustGet(t, p.keys, "b", true)
				from := epochOf(t, p.store)
				next := keyring.KEKID{Store: from.Store, Epoch: from.Epoch + 1}
				// Shred's steps, up to the crash.
				if err := p.keys.addKEK(next); err != nil {
					t.Fatal(err)
				}
				wantA := a
				if crash == "before the old KEK is destroyed" {
					if _, err := p.keys.rotate(ctx, from, next.Epoch, []string{"a"}); err != nil {
						t.Fatal(err)
					}
					wantA = nil
				}
				// Both the old and the new KEK are on disk now.
				both := p.keks
				if dir != "" {
					var err error
					if both, err = keyring.OpenKEKs(dir); err != nil {
						t.Fatal(err)
					}
				}
				for _, e := range []uint64{from.Epoch, next.Epoch} {
					if _, err := both.Get(keyring.KEKID{Store: from.Store, Epoch: e}); err != nil {
						t.Fatalf("setting up the crash: %v", err)
					}
				}

				q := start()
				if got := mustGet(t, q.keys, "a", false); !bytes.Equal(got, wantA) {
					t.Fatalf("key a after reconciling: %x, want %x", got, wantA)
				}
				if got := mustGet(t, q.keys, "b", false); !bytes.Equal(got, b) {
					t.Fatal("key b lost by reconciling")
				}
				if st := epochOf(t, q.store); st.Epoch != next.Epoch {
					t.Fatalf("the store is at epoch %d after reconciling, want %d", st.Epoch, next.Epoch)
				}
				onlyEpochHeld(t, q, dir)
			})
		})
	}
}

// TestMissingKEKIsAnErrorNotLoss: a data directory whose KEK file lacks
// the store's epoch (not shared between servers, restored from another
// time, deleted) stops key reads with an error that says why, and changes
// nothing in the store: putting the right file back recovers everything.
func TestMissingKEKIsAnErrorNotLoss(t *testing.T) {
	for _, damage := range []string{"deleted", "other store only", "older epoch only", "newer epoch only"} {
		t.Run(strings.ReplaceAll(damage, " ", "_"), func(t *testing.T) {
			for _, be := range backends[1:] { // the file: not for memory
				t.Run(be.name, func(t *testing.T) {
					ctx := context.Background()
					start, dir := be.setup(t)
					p := start()
					a := mustGet(t, p.keys, "a", true)
					if _, err := p.keys.Shred(ctx, nil); err != nil { // epoch 2: one before it
						t.Fatal(err)
					}
					st := epochOf(t, p.store)
					path := filepath.Join(dir, keyring.KEKFile)
					good, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.Remove(path); err != nil {
						t.Fatal(err)
					}
					if damage != "deleted" {
						keks, err := keyring.OpenKEKs(dir)
						if err != nil {
							t.Fatal(err)
						}
						id := map[string]keyring.KEKID{
							"other store only": {Store: "another-store", Epoch: st.Epoch},
							"older epoch only": {Store: st.Store, Epoch: st.Epoch - 1},
							"newer epoch only": {Store: st.Store, Epoch: st.Epoch + 1},
						}[damage]
						if err := keks.Add(id, bytes.Repeat([]byte{1}, KeySize)); err != nil {
							t.Fatal(err)
						}
					}
					q := start()
					_, err = q.keys.Get(ctx, "a", false)
					if err == nil || !strings.Contains(err.Error(), keyring.KEKFile) || !strings.Contains(err.Error(), fmt.Sprint("epoch ", st.Epoch)) {
						t.Fatalf("Get without the store's KEK: %v; want an error naming the file and epoch %d", err, st.Epoch)
					}
					if _, err := q.keys.Shred(ctx, []string{"a"}); err == nil {
						t.Fatal("Shred without the store's KEK succeeded")
					}
					if got := epochOf(t, q.store); got != st {
						t.Fatalf("the failed attempts moved the store from %v to %v", st, got)
					}
					if w, err := q.store.Key(ctx, "a"); err != nil || w.Epoch != st.Epoch {
						t.Fatalf("the stored key changed: %v, %v", w, err)
					}
					if err := os.WriteFile(path, good, 0o600); err != nil {
						t.Fatal(err)
					}
					if got := mustGet(t, start().keys, "a", false); !bytes.Equal(got, a) {
						t.Fatal("the key does not read after the file was put back")
					}
				})
			}
		})
	}
}

// TestGetRacingShred: key reads and creations in two processes race
// erasures. Every Get succeeds; no key is ever stored under a destroyed
// epoch (every key handed out for sealing is the one a fresh process
// reads); and once Shred has returned, no process that refreshed returns
// an erased key.
func TestGetRacingShred(t *testing.T) {
	forEachBackend(t, func(t *testing.T, start func() *process, dir string) {
		ctx := context.Background()
		p1, p2 := start(), start()
		const victims, creators, perCreator = 12, 4, 15
		stable := map[string][]byte{}
		for i := range 5 {
			s := fmt.Sprintf("stable-%d", i)
			stable[s] = mustGet(t, p1.keys, s, true)
		}
		var victimIDs []string
		for i := range victims {
			s := fmt.Sprintf("victim-%d", i)
			mustGet(t, p1.keys, s, true)
			victimIDs = append(victimIDs, s)
		}
		var (
			mu      sync.Mutex
			made    = map[string][]byte{}
			errs    []error
			wg      sync.WaitGroup
			stop    = make(chan struct{})
			fail    = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
			readers sync.WaitGroup
		)
		for c := range creators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := []*process{p1, p2}[c%2]
				for i := range perCreator {
					s := fmt.Sprintf("new-%d-%d", c, i)
					key, err := p.keys.Get(ctx, s, true)
					if err != nil {
						fail(fmt.Errorf("creating %s: %w", s, err))
						return
					}
					mu.Lock()
					made[s] = key
					mu.Unlock()
					for sub, want := range stable {
						if got, err := p.keys.Get(ctx, sub, false); err != nil || !bytes.Equal(got, want) {
							fail(fmt.Errorf("reading %s: %x, %v", sub, got, err))
							return
						}
						break
					}
				}
			}()
		}
		// Readers of the victims: whatever they get, nothing may fail.
		for _, p := range []*process{p1, p2} {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := p.keys.Get(ctx, victimIDs[i%victims], false); err != nil {
						fail(fmt.Errorf("reading a victim: %w", err))
						return
					}
					if _, err := p.keys.Refresh(ctx); err != nil {
						fail(err)
						return
					}
				}
			}()
		}
		for i, v := range victimIDs {
			p := []*process{p1, p2}[i%2]
			if _, err := p.keys.Shred(ctx, []string{v}); err != nil {
				t.Fatalf("Shred %s: %v", v, err)
			}
			if key := mustGet(t, p.keys, v, false); key != nil {
				t.Fatalf("%s is still returned by the process that erased it", v)
			}
		}
		wg.Wait()
		close(stop)
		readers.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		for _, p := range []*process{p1, p2} {
			if _, err := p.keys.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
		fresh := start()
		for _, q := range []*process{p1, p2, fresh} {
			for _, v := range victimIDs {
				if key := mustGet(t, q.keys, v, false); key != nil {
					t.Fatalf("erased %s still returned", v)
				}
			}
			for s, want := range made {
				if got := mustGet(t, q.keys, s, false); !bytes.Equal(got, want) {
					t.Fatalf("%s: the key handed out for sealing (%x) is not the stored one (%x)", s, want, got)
				}
			}
			for s, want := range stable {
				if got := mustGet(t, q.keys, s, false); !bytes.Equal(got, want) {
					t.Fatalf("%s changed", s)
				}
			}
		}
		onlyEpochHeld(t, fresh, dir)
	})
}

// pgTestDSN is a DSN for a fresh schema of its own (internal/pgtest).
func pgTestDSN(tb testing.TB) string {
	tb.Helper()
	dsn, _ := pgtest.Schema(tb, "subjectkeys_test_")
	return dsn
}

// The opened keys kept stay within their bound, and a key that made room
// is read again, unchanged.
func TestKeyCacheIsBounded(t *testing.T) {
	store, keks := tracestore.NewMemory(), keyring.MemoryKEKs()
	k := New(store, keks, read)
	k.max = 3
	made := map[string][]byte{}
	for i := range 10 {
		s := fmt.Sprint("subject-", i)
		made[s] = mustGet(t, k, s, true)
		k.mu.Lock()
		n := len(k.cache)
		k.mu.Unlock()
		if n > 3 {
			t.Fatalf("after %d subjects %d keys are cached, bound 3", i+1, n)
		}
	}
	for s, key := range made {
		if got := mustGet(t, k, s, false); !bytes.Equal(got, key) {
			t.Fatalf("%s: key %x read again as %x", s, key, got)
		}
	}
}
