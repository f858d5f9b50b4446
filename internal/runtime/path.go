package runtime

import "sync/atomic"

// sharedPath is the backing array of a run's Path, with room to grow, shared
// by the run and its clones. Every Apply clones the run and a transition
// appends to the clone's path; copying the path there made each step cost
// O(the run's length). Instead, the first run to append at a length claims
// the next slot and writes it in place; any other run of that length (a
// second Apply from the same run, a read's Apply on a snapshot outside the
// run's lock, an append the store refused) finds the slot taken and copies.
// A slot is written once, by its claimant, before any run that can read it
// exists, so runs sharing the array never see each other's appends.
type sharedPath struct {
	slots   []string     // len == cap; slots[:claimed] are written
	claimed atomic.Int64 // how many slots are taken
}

// appendPath appends state to r.Path. r.Path always has len == cap, so a
// caller's own append to it copies and cannot write into the shared slots.
func (r *Run) appendPath(state string) {
	n := len(r.Path)
	if b := r.path; b != nil && n > 0 && n < len(b.slots) && &r.Path[0] == &b.slots[0] &&
		b.claimed.CompareAndSwap(int64(n), int64(n+1)) {
		b.slots[n] = state
		r.Path = b.slots[: n+1 : n+1]
		return
	}
	b := &sharedPath{slots: make([]string, pathCap(n+1))}
	copy(b.slots, r.Path)
	b.slots[n] = state
	b.claimed.Store(int64(n + 1))
	r.path, r.Path = b, b.slots[:n+1:n+1]
}

// pathCap is the capacity of a new array for a path of n states: the
// smallest 8·2^k of at least n. It depends on n alone, so a copy has the
// capacity the path grown in place would have (reflect.DeepEqual of a run
// and the fold of its events holds however the path was built, as long as
// no other run has stepped from it: that claims a slot it shares).
func pathCap(n int) int {
	c := 8
	for c < n {
		c *= 2
	}
	return c
}
