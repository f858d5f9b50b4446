package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"time"
)

// syncResult is the disk's floor: a 4 KiB block rewritten in place and
// made durable with fdatasync, in the filesystem of the data directories.
type syncResult struct {
	Dir        string  `json:"dir"`
	Filesystem string  `json:"filesystem,omitempty"`
	Samples    int     `json:"samples"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
}

// measureFdatasync times n overwrites of one 4 KiB block at offset 0 of a
// file in dir, each followed by fdatasync: the cheapest durable write
// (the file's size never changes, so no metadata is synced), as a log that
// preallocates its space pays it. internal/tracestore's BenchmarkFdatasync
// measures the same with fsync.
func measureFdatasync(dir string, n int) (*syncResult, error) {
	f, err := os.CreateTemp(dir, "fdatasync-")
	if err != nil {
		return nil, fmt.Errorf("fdatasync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := bytes.Repeat([]byte{7}, 4096)
	if _, err := f.Write(block); err != nil {
		return nil, fmt.Errorf("fdatasync probe: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("fdatasync probe: %w", err)
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		t0 := time.Now()
		if _, err := f.WriteAt(block, 0); err != nil {
			return nil, fmt.Errorf("fdatasync probe: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return nil, fmt.Errorf("fdatasync probe: %w", err)
		}
		lat[i] = time.Since(t0)
	}
	slices.Sort(lat)
	return &syncResult{
		Dir:        dir,
		Filesystem: filesystem(dir),
		Samples:    n,
		P50us:      micros(percentile(lat, 50)),
		P99us:      micros(percentile(lat, 99)),
	}, nil
}
