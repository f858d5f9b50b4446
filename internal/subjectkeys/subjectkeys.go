// Package subjectkeys keeps the per-subject keys that seal personal data in
// traces: it creates them, wraps them for the store under the current
// key-encryption key (KEK), unwraps and caches them, and destroys them.
//
// Destroying a key is crypto-shredding, and a database does not forget: a
// deleted row lingers in SQLite's free pages and WAL, in PostgreSQL's dead
// tuples and WAL, and in backups. So the store never holds a subject key in
// clear, only wrapped under the KEK of the store's current epoch, and the
// KEKs live outside the database (internal/keyring). Shred deletes the
// subjects' keys, re-wraps every other key under a fresh epoch in the same
// transaction, and then destroys the old epoch's KEK: every stale copy of
// an erased key, wherever the database left it, is wrapped under a KEK
// that no longer exists. docs/erasure.md states the guarantee and its
// limits.
package subjectkeys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// KeySize is the size of subject keys and KEKs (AES-256).
const KeySize = 32

// Keys is the service's view of subject keys. It is safe for concurrent
// use.
type Keys struct {
	store tracestore.Keys
	keks  *keyring.KEKs
	read  func([]byte) error // randomness, injected

	mu    sync.Mutex
	cache map[string][]byte // opened keys by subject, at most max
	max   int
	gen   uint64              // moves on whenever cached keys are dropped as stale (not on eviction)
	ready bool                // the store's epoch has a KEK (reconcile ran)
	state tracestore.KeyState // the store's epoch as last seen
	// missed: a Shred here found that another process had rotated, and
	// dropped the cache; the next Refresh reports it, so that the caller
	// drops what it derived from the keys too.
	missed bool
}

// retries bounds how often one Get or put starts again because a rotation
// ran under it.
const retries = 5

// New returns the keys of store, wrapped under keks, drawing new keys and
// nonces from read.
func New(store tracestore.Keys, keks *keyring.KEKs, read func([]byte) error) *Keys {
	return &Keys{store: store, keks: keks, read: read, cache: map[string][]byte{}, max: maxCached}
}

// maxCached bounds the opened keys kept (about 100 bytes each): one a data
// subject ever sealed or opened would otherwise stay for the process's life.
// Past it, an arbitrary cached key makes room; it is read again from the
// store when next needed.
const maxCached = 10000

// Get returns the subject's key. With create, a missing key is made (a
// subject's first sealed value); without, nil means it was destroyed or
// never made.
//
// A rotation (an erasure, here or in another process) may run between
// reading the stored key and opening it: the key read may be one just
// deleted, or wrapped under a KEK just destroyed. Get then reads it again,
// so that it neither caches an erased key after Shred has forgotten it nor
// fails because the epoch moved.
func (k *Keys) Get(ctx context.Context, subject string, create bool) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		k.mu.Lock()
		key, ok := k.cache[subject]
		gen := k.gen
		k.mu.Unlock()
		if ok {
			return key, nil
		}
		if err := k.reconcile(ctx); err != nil {
			return nil, err
		}
		w, err := k.store.Key(ctx, subject)
		switch {
		case errors.Is(err, tracestore.ErrNotFound) && !create:
			return nil, nil
		case errors.Is(err, tracestore.ErrNotFound):
			w, err = k.put(ctx, subject)
		}
		if err != nil {
			return nil, err
		}
		key, err = k.unwrap(w)
		if err == nil {
			k.mu.Lock()
			current := k.gen == gen
			if current {
				if len(k.cache) >= k.max {
					for s := range k.cache { // map order: an arbitrary one
						delete(k.cache, s)
						break
					}
				}
				k.cache[subject] = key
			}
			k.mu.Unlock()
			if current {
				return key, nil
			}
		}
		if attempt < retries && (err == nil || k.moved(ctx, w.Epoch)) {
			continue
		}
		if err == nil {
			err = fmt.Errorf("subject key %s: the keys were rotated %d times while it was read; try again", subject, attempt+1)
		}
		return nil, err
	}
}

// moved reports whether the store's epoch is no longer epoch.
func (k *Keys) moved(ctx context.Context, epoch uint64) bool {
	state, err := k.store.KeyEpoch(ctx)
	return err == nil && state.Epoch != epoch
}

// put makes and stores a new key, wrapped under the store's epoch; if a
// rotation moved the epoch on meanwhile, it wraps again under the new one.
func (k *Keys) put(ctx context.Context, subject string) (tracestore.WrappedKey, error) {
	fresh := make([]byte, KeySize)
	if err := k.read(fresh); err != nil {
		return tracestore.WrappedKey{}, fmt.Errorf("subject key: %w", err)
	}
	defer clear(fresh)
	for attempt := 0; ; attempt++ {
		state, err := k.store.KeyEpoch(ctx)
		if err != nil {
			return tracestore.WrappedKey{}, err
		}
		kek, err := k.keks.Get(keyring.KEKID{Store: state.Store, Epoch: state.Epoch})
		if err != nil {
			// Destroyed by a rotation since KeyEpoch?
			if attempt < retries && k.moved(ctx, state.Epoch) {
				continue
			}
			return tracestore.WrappedKey{}, err
		}
		wrapped, err := k.wrap(kek, subject, state.Epoch, fresh)
		if err != nil {
			return tracestore.WrappedKey{}, err
		}
		w, err := k.store.PutKey(ctx, tracestore.WrappedKey{Subject: subject, Wrapped: wrapped, Epoch: state.Epoch})
		if errors.Is(err, tracestore.ErrKeyEpoch) && attempt < retries {
			continue
		}
		return w, err
	}
}

// unwrap opens a stored key: under its epoch's KEK, or as it is at epoch 0
// (written before wrapping existed; reconcile re-wraps those).
func (k *Keys) unwrap(w tracestore.WrappedKey) ([]byte, error) {
	if w.Epoch == 0 {
		if len(w.Wrapped) != KeySize {
			return nil, fmt.Errorf("subject key %s: %d bytes", w.Subject, len(w.Wrapped))
		}
		return slices.Clone(w.Wrapped), nil
	}
	k.mu.Lock()
	store := k.state.Store
	k.mu.Unlock()
	kek, err := k.keks.Get(keyring.KEKID{Store: store, Epoch: w.Epoch})
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(w.Wrapped) < aead.NonceSize() {
		return nil, fmt.Errorf("subject key %s: wrapped key too short", w.Subject)
	}
	nonce, ct := w.Wrapped[:aead.NonceSize()], w.Wrapped[aead.NonceSize():]
	key, err := aead.Open(nil, nonce, ct, wrapAAD(w.Subject, w.Epoch))
	if err != nil {
		return nil, fmt.Errorf("subject key %s does not unwrap under epoch %d: %w", w.Subject, w.Epoch, err)
	}
	return key, nil
}

// wrap seals key under kek: nonce || AES-256-GCM(key), bound to the subject
// and the epoch so that a wrapped key moved to another row or epoch does
// not open.
func (k *Keys) wrap(kek []byte, subject string, epoch uint64, key []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if err := k.read(nonce); err != nil {
		return nil, fmt.Errorf("subject key: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, key, wrapAAD(subject, epoch)), nil
}

func wrapAAD(subject string, epoch uint64) []byte {
	b := append([]byte("nano-vm-mcp subject key\x00"), subject...)
	return binary.BigEndian.AppendUint64(append(b, 0), epoch)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// reconcile, once per process (and again after a failure), makes the
// store's epoch one whose KEK is held, and destroys every other KEK:
//   - a new store (epoch 0, no KEK yet) gets epoch 1, and any keys written
//     unwrapped by an earlier version are wrapped;
//   - a rotation that a crash interrupted after its new KEK was saved is
//     finished (the store moves to the newest epoch), or its unused KEK is
//     dropped (it already did).
func (k *Keys) reconcile(ctx context.Context) error {
	k.mu.Lock()
	ready := k.ready
	k.mu.Unlock()
	if ready {
		return nil
	}
	unlock, err := k.keks.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	state, err := k.store.KeyEpoch(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.state = state
	k.mu.Unlock()
	current := keyring.KEKID{Store: state.Store, Epoch: state.Epoch}
	newest := k.keks.Newest(state.Store)
	if state.Epoch == 0 || newest > state.Epoch {
		to := max(newest, state.Epoch+1)
		if newest <= state.Epoch {
			if err := k.addKEK(keyring.KEKID{Store: state.Store, Epoch: to}); err != nil {
				return err
			}
		}
		if _, err := k.rotate(ctx, state, to, nil); err != nil {
			return err
		}
		current.Epoch = to
	} else if _, err := k.keks.Get(current); err != nil {
		return err // the store's KEK is not here, and no rotation can help
	}
	if err := k.keks.Retain(current); err != nil {
		return err
	}
	k.mu.Lock()
	k.ready, k.state.Epoch = true, current.Epoch
	k.mu.Unlock()
	return nil
}

func (k *Keys) addKEK(id keyring.KEKID) error {
	kek := make([]byte, KeySize)
	if err := k.read(kek); err != nil {
		return fmt.Errorf("key-encryption key: %w", err)
	}
	return k.keks.Add(id, kek)
}

// rotate re-wraps the store's keys from the epoch of from to epoch to
// (whose KEK is held), deleting erase's.
func (k *Keys) rotate(ctx context.Context, from tracestore.KeyState, to uint64, erase []string) ([]string, error) {
	kek, err := k.keks.Get(keyring.KEKID{Store: from.Store, Epoch: to})
	if err != nil {
		return nil, err
	}
	return k.store.RotateKeys(ctx, from.Epoch, to, erase, func(w tracestore.WrappedKey) ([]byte, error) {
		key, err := k.unwrap(w)
		if err != nil {
			return nil, err
		}
		defer clear(key)
		return k.wrap(kek, w.Subject, to, key)
	})
}

// Shred destroys the subjects' keys: it deletes them and re-wraps every
// other key under a new epoch in one store transaction, and then destroys
// the old epoch's KEK. It returns the subjects whose keys existed. Shred
// with no subjects only rotates.
func (k *Keys) Shred(ctx context.Context, subjects []string) ([]string, error) {
	if err := k.reconcile(ctx); err != nil {
		return nil, err
	}
	unlock, err := k.keks.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	from, err := k.store.KeyEpoch(ctx)
	if err != nil {
		return nil, err
	}
	// Another process erased since this one last looked: drop the cache,
	// as Refresh would, before this rotation hides that the epoch moved.
	k.mu.Lock()
	if from != k.state {
		clear(k.cache)
		k.gen++
		k.missed = true
	}
	k.mu.Unlock()
	next := keyring.KEKID{Store: from.Store, Epoch: max(from.Epoch, k.keks.Newest(from.Store)) + 1}
	if err := k.addKEK(next); err != nil {
		return nil, err
	}
	// Forget the keys before they go, so that no use of the cache outlives
	// the rotation; a concurrent Get meanwhile reads the store again.
	k.forget(subjects)
	deleted, err := k.rotate(ctx, from, next.Epoch, subjects)
	if err != nil {
		// The store is still at from: drop the unused KEK (a crash here
		// instead leaves it for reconcile).
		return nil, errors.Join(err, k.keks.Retain(keyring.KEKID{Store: from.Store, Epoch: from.Epoch}))
	}
	k.forget(subjects)
	if err := k.keks.Retain(next); err != nil {
		return nil, fmt.Errorf("the keys were erased in the store, but the old key-encryption key could not be destroyed (the next start retries): %w", err)
	}
	k.mu.Lock()
	k.state = tracestore.KeyState{Store: from.Store, Epoch: next.Epoch}
	k.mu.Unlock()
	return deleted, nil
}

func (k *Keys) forget(subjects []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// The slices are not zeroed: a seal in progress may hold one.
	for _, s := range subjects {
		delete(k.cache, s)
	}
	k.gen++ // a Get reading meanwhile must not cache what it read
}

// Refresh notices a rotation made by another process sharing the store:
// when the store's epoch has moved since this process last saw it (or a
// Shred here found it had), the cache is emptied (a key erased elsewhere
// must not stay usable here) and Refresh reports true.
func (k *Keys) Refresh(ctx context.Context) (bool, error) {
	state, err := k.store.KeyEpoch(ctx)
	if err != nil {
		return false, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.ready || (state == k.state && !k.missed) {
		return false, nil
	}
	clear(k.cache)
	k.gen++
	k.state, k.missed = state, false
	return true, nil
}
