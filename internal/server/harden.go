package server

import (
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// HTTP limits of the API server. Slow or idle clients are cut, so a
// Slowloris client holds a connection for at most ReadHeaderTimeout.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second  // a whole request, body included
	writeTimeout      = 120 * time.Second // an answer (streams extend their own deadline)
	idleTimeout       = 120 * time.Second
	// maxBatchDecoded caps an agent batch's decoded JSON: a batch of 5,000
	// observations is about 3 MB, and decoding holds about three times
	// the limit at worst (a gzip bomb of one long string).
	maxBatchDecoded = 32 << 20
	// DefaultMaxConns caps concurrent connections; more wait in the
	// kernel's accept queue.
	DefaultMaxConns = 1024
)

// newHTTPServer is the API's http.Server with its timeouts.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		// Room for a filter at its length limit in the query string, so it
		// gets the parser's clear error rather than a bare 431.
		MaxHeaderBytes: 256 << 10,
	}
}

// limitListener caps concurrent connections at n (DefaultMaxConns if 0).
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		n = DefaultMaxConns
	}
	return netutil.LimitListener(ln, n)
}

// hostCheck refuses requests whose Host is not one the server answers
// to, so a web page whose name resolves to this server (DNS rebinding)
// cannot talk to it from a browser. Allowed: IP literals (a page at an IP
// is that IP's own origin), localhost, this machine's host name and
// extra names from Config.AllowedHosts.
func hostCheck(extra []string, h http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		allowed[strings.ToLower(hn)] = true
	}
	for _, e := range extra {
		allowed[strings.ToLower(strings.TrimSuffix(e, "."))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
		if net.ParseIP(host) == nil && !allowed[host] {
			httpapi.WriteError(w, api.Errorf(http.StatusMisdirectedRequest,
				"host %q is not a name of this server (allow it with --allowed-host)", r.Host))
			return
		}
		h.ServeHTTP(w, r)
	})
}
