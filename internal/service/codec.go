package service

import (
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// EncodeEvents turns events into store records (canonical JSON).
func EncodeEvents(events []runtime.Event) ([]tracestore.Record, error) {
	recs := make([]tracestore.Record, len(events))
	for i := range events {
		body, err := runtime.EncodeEvent(&events[i])
		if err != nil {
			return nil, err
		}
		recs[i] = tracestore.Record{Index: events[i].Index, Type: string(events[i].Type), Body: body}
	}
	return recs, nil
}

// DecodeEvents turns store records back into events. Numbers inside inputs
// and outputs stay json.Number, exactly as they were submitted.
func DecodeEvents(recs []tracestore.Record) ([]runtime.Event, error) {
	out := make([]runtime.Event, len(recs))
	for i, r := range recs {
		e, err := runtime.DecodeEvent(r.Body)
		if err != nil {
			return nil, fmt.Errorf("decode event %d: %w", r.Index, err)
		}
		if e.Index != r.Index {
			return nil, fmt.Errorf("event %d is stored at index %d", e.Index, r.Index)
		}
		out[i] = e
	}
	return out, nil
}
