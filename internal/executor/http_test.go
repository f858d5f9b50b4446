package executor

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// httpTool builds the executor of a one-tool registry calling url.
func httpTool(t *testing.T, f *fixture, url, extra string) Executor {
	t.Helper()
	spec := "    http: {url: '" + url + "', headers: {Authorization: 'file:secret', X-Api-Key: 'env:TOKEN', X-Version: '2'}}\n" + extra
	return execTool(t, f, spec)
}

func TestHTTPSendsCanonicalArgumentsKeyAndHeaders(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var got []http.Header
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r.Header.Clone()), append(bodies, r.Method+" "+string(b))
		mu.Unlock()
		w.Write([]byte(`{"refund_id":"r-1","amount":12.50}`))
	}))
	defer srv.Close()
	e := httpTool(t, f, srv.URL+"/refunds", "")
	call := Call{Arguments: map[string]any{"order": "o-1", "amount": json.Number("12.50")}, IdempotencyKey: "run-1/visit-2/call-3"}
	for attempt := 1; attempt <= 2; attempt++ {
		call.Attempt = attempt
		v, err := e.Invoke(context.Background(), call)
		if err != nil {
			t.Fatal(err)
		}
		if m := v.(map[string]any); m["refund_id"] != "r-1" || m["amount"] != json.Number("12.50") {
			t.Errorf("result %v", v)
		}
	}
	for i, h := range got {
		if bodies[i] != `POST {"amount":12.50,"order":"o-1"}` && bodies[i] != `POST {"amount":12.5,"order":"o-1"}` {
			t.Errorf("body %q", bodies[i])
		}
		for k, want := range map[string]string{
			"Idempotency-Key": "run-1/visit-2/call-3", "Content-Type": "application/json",
			"Authorization": fileSecret, "X-Api-Key": envSecret, "X-Version": "2",
		} {
			if h.Get(k) != want {
				t.Errorf("request %d: %s = %q, want %q", i, k, h.Get(k), want)
			}
		}
	}
}

func TestHTTPClassifiesFailuresWithoutShowingSecrets(t *testing.T) {
	f := newFixture(t)
	hang := make(chan struct{})
	handlers := map[string]http.HandlerFunc{
		"/error": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			w.Write([]byte(`{"echo":"` + r.Header.Get("Authorization") + `"}`))
		},
		"/invalid": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"a":1,"a":2}`)) },
		"/empty":   func(w http.ResponseWriter, r *http.Request) {},
		"/huge": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`"` + strings.Repeat("x", maxHTTPBody) + `"`))
		},
		"/hang": func(w http.ResponseWriter, r *http.Request) { <-hang },
		"/redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example/", http.StatusFound)
		},
	}
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.HandleFunc(p, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(hang) // before Close, which waits for the hanging handler
	// A port with nothing behind it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := "http://" + l.Addr().String() + "/x"
	l.Close()

	cases := []struct {
		name, url string
		class     Class
		status    int
		detail    string
	}{
		{"non-2xx carries the status", srv.URL + "/error", ClassToolError, 503, "answered 503"},
		{"a redirect is not followed", srv.URL + "/redirect", ClassToolError, 302, "answered 302"},
		{"invalid JSON", srv.URL + "/invalid", ClassSchemaViolation, 0, "not one strict JSON document"},
		{"empty body", srv.URL + "/empty", ClassSchemaViolation, 0, "not one strict JSON document"},
		{"huge body", srv.URL + "/huge", ClassSandbox, 0, "exceeds 1048576 bytes"},
		{"hang", srv.URL + "/hang", ClassTimeout, 0, "no answer within 300ms"},
		{"connection refused", closed, ClassTransport, 0, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := httpTool(t, f, c.url, "    timeout: 300ms\n")
			_, err := e.Invoke(context.Background(), Call{Arguments: map[string]any{"k": "v"}, IdempotencyKey: "k"})
			fl := failureOf(t, err)
			if fl.Class != c.class || fl.Status != c.status || !strings.Contains(fl.Detail, c.detail) {
				t.Errorf("%+v, want %s %d %q", fl, c.class, c.status, c.detail)
			}
			if s := fl.Error(); strings.Contains(s, fileSecret) || strings.Contains(s, envSecret) {
				t.Errorf("the failure shows a secret: %s", s)
			}
		})
	}
}
