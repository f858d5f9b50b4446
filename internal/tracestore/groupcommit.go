package tracestore

import (
	"context"
	"errors"
	"sync"
)

// Group commit. With synchronous=FULL every SQLite commit syncs the log,
// and the sync, not the SQL, is most of an append's cost: on a virtual
// disk it is also CPU, the kernel's writeback charged to the process.
// Appends from concurrent runs therefore share one transaction and one
// sync. While one batch is being written, the appends that arrive queue.
// When the batch is durable, its writer hands the queue, as the next
// batch, to the first queued append's goroutine, and answers its own
// batch's appends. An append that finds no batch in progress writes itself
// at once: a lone agent never waits for company (the leader/follower
// scheme of databases' group commit, with no timer).
//
// Each append in a batch of several runs inside a savepoint, so that one
// that fails (a lost race, a lease lost, a bad record) is undone alone
// and reported to its caller, while the others commit. A failed commit
// fails every append of its batch, and none of them is applied. No append
// is answered before the commit that holds it has returned, so the
// guide's rule holds: nothing is acknowledged before it is durable.

// maxBatch bounds the appends one transaction takes, so that a batch's
// latency stays bounded however many agents queue; the rest wait for the
// next.
const maxBatch = 128

// errBatchPanicked fails the appends of a batch whose writer panicked:
// its transaction was rolled back.
var errBatchPanicked = errors.New("tracestore: the append's batch was abandoned: its writer panicked")

// appendReq is one Append in the group committer: its arguments, and what
// the batch's writer reports back.
type appendReq struct {
	ctx              context.Context
	runID            string
	records          []Record
	info             RunInfo
	started, updated int64

	err     error // set by the batch's writer
	skipped bool  // left out of its batch: its context ended first
	// wake is signalled exactly once, when the append is done (err set) or
	// when its goroutine is handed the lead of the next batch (lead set).
	wake  chan struct{}
	lead  bool
	batch []*appendReq // the batch this append leads; itself first
	alone [1]*appendReq
}

// committer queues appends and writes them in batches through
// writeBatch, which sets every request's err.
type committer struct {
	writeBatch func(ctx context.Context, batch []*appendReq)

	mu    sync.Mutex
	busy  bool // a batch is being written; when false, queue is empty
	queue []*appendReq
	// writing is held while a batch is written: the checkpointer takes it
	// to finish a checkpoint between two batches (checkpoint.go).
	writing sync.Mutex
}

// append writes r alone or in a batch with others, and returns once the
// batch that holds it is durable or has failed.
func (c *committer) append(r *appendReq) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.busy {
		r.wake = make(chan struct{}, 1)
		c.queue = append(c.queue, r)
		c.mu.Unlock()
		// Once queued, the append is waited for even if its context ends
		// meanwhile: it may be in a batch already, and its caller must not
		// take for failed what may yet be written. The batch's writer
		// leaves out an append whose context ended before it began.
		<-r.wake
		if !r.lead {
			return r.err
		}
	} else {
		c.busy = true
		c.mu.Unlock()
		r.alone[0] = r
		r.batch = r.alone[:]
	}
	c.lead(r.batch)
	return r.err
}

// lead writes batch, then hands the queue to its next writer and answers
// batch's appends.
func (c *committer) lead(batch []*appendReq) {
	finished := false
	defer func() {
		if !finished {
			for _, r := range batch {
				r.err = errBatchPanicked
			}
		}
		c.handOff()
		for _, r := range batch[1:] {
			r.wake <- struct{}{}
		}
	}()
	// The batch's transaction must not end with its leader's request: the
	// other appends in it are not the leader's to cancel.
	c.writing.Lock()
	defer c.writing.Unlock()
	c.writeBatch(context.WithoutCancel(batch[0].ctx), batch)
	finished = true
}

// handOff makes the first queued append's goroutine the writer of the
// next batch, of up to maxBatch queued appends, or marks the committer
// idle when none is queued.
func (c *committer) handOff() {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.busy = false
		c.queue = nil
		c.mu.Unlock()
		return
	}
	n := min(len(c.queue), maxBatch)
	next := c.queue[0]
	next.batch = c.queue[:n:n]
	if n == len(c.queue) {
		c.queue = nil
	} else {
		c.queue = append([]*appendReq(nil), c.queue[n:]...)
	}
	next.lead = true
	c.mu.Unlock()
	next.wake <- struct{}{}
}
