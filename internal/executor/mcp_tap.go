package executor

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
)

// tap sits between mcp-go's client and its transport and keeps the JSON
// text of the results the executor reads. mcp-go decodes a tools/list
// result into its own Tool type, which keeps five keywords of an input
// schema and drops the rest (a pin over that form would miss a changed
// "description" inside the schema), and decodes tools/call results
// leniently (float64 numbers, duplicate keys). The executor reads both
// from the text instead: a request whose context carries a *rawResults
// for its method has each of its results appended there.
type tap struct {
	transport.Interface
}

// rawResults collects the results of the requests of one method made with
// a context that carries it.
type rawResults struct {
	method string
	mu     sync.Mutex
	pages  []json.RawMessage
}

type rawResultsKey struct{}

// withRaw returns a context whose requests of method have their results
// collected in the returned *rawResults.
func withRaw(ctx context.Context, method string) (context.Context, *rawResults) {
	r := &rawResults{method: method}
	return context.WithValue(ctx, rawResultsKey{}, r), r
}

// results returns what was collected.
func (r *rawResults) results() []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pages
}

func (t *tap) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	resp, err := t.Interface.SendRequest(ctx, req)
	if err == nil && resp != nil && resp.Error == nil {
		if r, ok := ctx.Value(rawResultsKey{}).(*rawResults); ok && r.method == req.Method {
			r.mu.Lock()
			r.pages = append(r.pages, resp.Result)
			r.mu.Unlock()
		}
	}
	return resp, err
}

// SetRequestHandler passes the client's handler of server requests (ping,
// and the refusals of sampling and elicitation) on to the transport.
func (t *tap) SetRequestHandler(h transport.RequestHandler) {
	if b, ok := t.Interface.(transport.BidirectionalInterface); ok {
		b.SetRequestHandler(h)
	}
}

// httpTap is the tap of an HTTP transport: mcp-go's client tells HTTP
// apart by this method (the protocol version header, no
// notifications/cancelled), so only the HTTP tap may have it.
type httpTap struct {
	*tap
}

func (t httpTap) SetProtocolVersion(v string) {
	t.Interface.(transport.HTTPConnection).SetProtocolVersion(v)
}

// tapped wraps a transport in the tap that matches its kind.
func tapped(tr transport.Interface) transport.Interface {
	t := &tap{Interface: tr}
	if _, ok := tr.(transport.HTTPConnection); ok {
		return httpTap{t}
	}
	return t
}
