package access

import (
	"net/http"
	"time"
)

// Timeouts and limits of NewHTTPServer.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// NewHTTPServer returns a server for h on addr with timeouts that bound
// slow or idle clients:
//
//   - ReadHeaderTimeout bounds the request line and headers (slowloris).
//   - ReadTimeout bounds reading the whole request, body included. It does
//     not cut long-lived responses: once the body has been read, net/http
//     clears the read deadline while the handler runs (connReader's
//     background read), so an SSE stream on a GET or after a POST lives on.
//   - IdleTimeout closes keep-alive connections left unused.
//   - MaxHeaderBytes is well above any bearer token or MCP header.
//
// WriteTimeout stays 0 (none) on purpose. It is a deadline on the whole
// response, fixed when the request has been read; the Streamable HTTP
// transport answers with SSE streams and the legacy SSE transport keeps a
// GET stream open for the whole session, both for minutes or hours, and a
// WriteTimeout would silently cut them. Long responses are bounded instead
// by the request context (cancelled when the client goes away), by the
// handlers' own deadlines (http.ResponseController), and by graceful
// Shutdown.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
