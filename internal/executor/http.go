package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// maxHTTPBody caps an http tool's response body.
const maxHTTPBody = 1 << 20

// httpExecutor calls an HTTP endpoint with the evaluated arguments as its
// JSON body.
type httpExecutor struct {
	t       *Tool
	headers []header
	client  *http.Client
}

func newHTTP(t *Tool, res *resolved) Executor {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &httpExecutor{t: t, headers: res.headers, client: &http.Client{
		Transport: tr,
		// No redirect is followed: the registry names the endpoint, and a
		// redirect would carry the credential headers somewhere else. A 3xx
		// answer is a non-2xx failure like any other.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (e *httpExecutor) Close() error {
	e.client.CloseIdleConnections()
	return nil
}

func (e *httpExecutor) Invoke(ctx context.Context, c Call) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, e.t.Timeout)
	defer cancel()
	_, body, err := canonicalArgs(c)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, e.t.HTTP.Method, e.t.HTTP.URL, bytes.NewReader(body))
	if err != nil {
		return nil, Fail(ClassTransport, "cannot build the request: %v", err)
	}
	for _, h := range e.headers {
		req.Header.Set(h.name, h.value())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", c.IdempotencyKey)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, e.transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, e.transportFailure(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The body is not recorded: an endpoint may echo what it was sent.
		return nil, &Failure{Class: ClassToolError, Status: resp.StatusCode, Detail: fmt.Sprintf("%s %s answered %s", e.t.HTTP.Method, e.t.HTTP.URL, resp.Status)}
	}
	if len(data) > maxHTTPBody {
		return nil, Fail(ClassSandbox, "the response body exceeds %d bytes", maxHTTPBody)
	}
	v, err := jsonvalue.Decode(data)
	if err != nil {
		return nil, Fail(ClassSchemaViolation, "the response body is not one strict JSON document: %v", err)
	}
	return v, nil
}

// transportFailure classifies a request that got no complete answer. The
// detail names the endpoint and the network error, never a header.
func (e *httpExecutor) transportFailure(ctx context.Context, err error) *Failure {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Fail(ClassTimeout, "%s %s: no answer within %s", e.t.HTTP.Method, e.t.HTTP.URL, e.t.Timeout)
	case ctx.Err() != nil:
		return Fail(ClassTransport, "%s %s: the call was cancelled", e.t.HTTP.Method, e.t.HTTP.URL)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return Fail(ClassTransport, "%s %s: %v", e.t.HTTP.Method, e.t.HTTP.URL, err)
}
