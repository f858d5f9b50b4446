package tracestore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
)

// Checkpoints off the append path. SQLite's automatic checkpoint runs in
// the connection whose commit crossed the threshold, inside that COMMIT:
// on the store's one writer, every batch queued behind it waited while
// about a thousand pages were copied into the database file and both files
// synced (about a tenth of the writer's time under the load benchmark). A
// checkpointer of its own, on a connection of its own, does that work
// beside the writer instead: a PASSIVE checkpoint takes no write lock.
//
// The log starts over from its beginning only after a checkpoint that
// copied every frame in it, and one that runs beside the writer rarely
// does: the writer adds frames meanwhile. So the checkpointer copies what
// it can beside the writer, then finishes between two batches, holding
// the group committer's writing lock while it copies the few frames
// written meanwhile. The writer's own automatic checkpoint stays, at a far
// higher threshold, as a backstop should the checkpointer fall behind.

const (
	// checkpointEvery is how many appends the writer commits between two
	// nudges of the checkpointer: with the 3 to 15 pages an append writes,
	// a few hundred to a thousand pages, about SQLite's own default.
	// checkpointBytes nudges it sooner when the appends' records are
	// large, so that the log never reaches the backstop first.
	checkpointEvery = 64
	checkpointBytes = 4 << 20
	// backstopPages is the writer's automatic checkpoint threshold, in
	// pages (4 KiB each): 40 MiB of log.
	backstopPages = 10000
)

// checkpointer runs PASSIVE checkpoints when nudged, one at a time.
type checkpointer struct {
	db      *sql.DB
	writing *sync.Mutex   // the group committer's (groupcommit.go)
	nudges  chan struct{} // capacity 1: nudges while one runs coalesce
	stop    chan struct{}
	stopped chan struct{}
	since   atomic.Int64 // appends committed since the last nudge
	bytes   atomic.Int64 // their records' bytes
	done    atomic.Int64 // checkpoints that succeeded, for the tests
	closing sync.Once
}

// startCheckpointer opens the checkpointer's connection to path and starts
// it.
func startCheckpointer(path string, writing *sync.Mutex) (*checkpointer, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	c := &checkpointer{db: db, writing: writing, nudges: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.loop()
	return c, nil
}

func (c *checkpointer) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.stop:
			return
		case <-c.nudges:
			// A failure is left for the next nudge, or the writer's
			// backstop: the log only grows meanwhile, nothing is lost.
			ctx := context.Background()
			_, err := c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
			if err == nil {
				c.writing.Lock()
				_, err = c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
				c.writing.Unlock()
			}
			if err == nil {
				c.done.Add(1)
			}
		}
	}
}

// committed counts n appends of size bytes just committed, and nudges the
// checkpointer every checkpointEvery of them or checkpointBytes of their
// records. A nil checkpointer (stopped by a test) does nothing.
func (c *checkpointer) committed(n int, size int64) {
	if c == nil {
		return
	}
	if c.since.Add(int64(n)) < checkpointEvery && c.bytes.Add(size) < checkpointBytes {
		return
	}
	c.since.Store(0)
	c.bytes.Store(0)
	select {
	case c.nudges <- struct{}{}:
	default:
	}
}

// close stops the checkpointer, waiting for a checkpoint in progress, and
// closes its connection; closing again does nothing, as the store's Close
// allows.
func (c *checkpointer) close() error {
	var err error
	c.closing.Do(func() {
		close(c.stop)
		<-c.stopped
		err = c.db.Close()
	})
	return err
}
