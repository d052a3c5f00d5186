// Package client is the Go client of Palisade's REST API (pkg/api). The
// CLI, the node agent and other programs (a Terraform provider, say) use
// it; every non-2xx answer comes back as an *api.Error.
//
//	c, err := client.New(client.Options{Server: "https://palisade:7443", Token: tok, CAFile: "ca.crt"})
//	list, err := c.SearchInventory(ctx, "namespace = shop", client.SearchOptions{})
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/pkg/api"
)

// DefaultServer is used when neither Options.Server nor PALISADE_SERVER is set.
const DefaultServer = "https://127.0.0.1:7070"

// Environment variables the CLI and scripts use.
const (
	EnvServer = "PALISADE_SERVER"
	EnvToken  = "PALISADE_TOKEN"
	EnvCA     = "PALISADE_CA"
)

// Options configure a Client. Zero values fall back to the environment
// (see FromEnv) only when the caller asks for it.
type Options struct {
	Server string // base URL
	Token  string // API token, sent as "Authorization: Bearer <token>"
	// CAFile is a PEM bundle to trust for the server's certificate (the
	// server's <data>/ca.crt); empty: the system roots.
	CAFile string
	// TLS, when set, is used as is (an agent's client certificate, say).
	TLS *tls.Config
	// HTTP, when set, is used as is and TLS/CAFile are ignored.
	HTTP    *http.Client
	Timeout time.Duration // per request; default 60 s
	// UserAgent names the calling program.
	UserAgent string
}

// Client calls one Palisade server. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	ua    string
	http  *http.Client
}

// ServerURL returns flagValue, else $PALISADE_SERVER, else DefaultServer.
func ServerURL(flagValue string) string {
	if flagValue != "" {
		return strings.TrimRight(flagValue, "/")
	}
	if v := os.Getenv(EnvServer); v != "" {
		return strings.TrimRight(v, "/")
	}
	return DefaultServer
}

// New returns a client for o.Server (ServerURL("") when empty).
func New(o Options) (*Client, error) {
	base := ServerURL(o.Server)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want a URL like https://HOST:PORT", base)
	}
	c := &Client{base: base, token: o.Token, ua: o.UserAgent, http: o.HTTP}
	if c.ua == "" {
		c.ua = "palisade-client"
	}
	if c.http == nil {
		tlsCfg := o.TLS
		if tlsCfg == nil && o.CAFile != "" {
			pool, err := caPool(o.CAFile)
			if err != nil {
				return nil, err
			}
			tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		timeout := o.Timeout
		if timeout <= 0 {
			timeout = 60 * time.Second
		}
		c.http = &http.Client{Transport: tr, Timeout: timeout}
	}
	return c, nil
}

// caPool reads a PEM CA bundle.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Server is the base URL the client calls.
func (c *Client) Server() string { return c.base }

// HTTPClient is the underlying HTTP client.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Request is one call: a method, a path under the server (with or without
// a query) and an optional body.
type Request struct {
	Method string
	Path   string     // e.g. /api/v1/flows
	Query  url.Values // added to Path
	// JSON is marshalled as the body; Body (raw, e.g. a gzip'd batch) is
	// sent as is with Header.
	JSON   any
	Body   []byte
	Header http.Header
}

// Do sends req and decodes a JSON answer into out (when non-nil and the
// answer has a body). A non-2xx answer is an *api.Error.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	data, err := c.DoRaw(ctx, req)
	if err != nil {
		return err
	}
	if out != nil && len(data) > 0 {
		if raw, ok := out.(*[]byte); ok {
			*raw = data
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", req.Method, req.Path, err)
		}
	}
	return nil
}

// maxAnswer bounds what the client reads of an answer.
const maxAnswer = 256 << 20

// DoRaw sends req and returns the answer's body.
func (c *Client) DoRaw(ctx context.Context, req Request) ([]byte, error) {
	u := c.base + req.Path
	if len(req.Query) > 0 {
		u += "?" + req.Query.Encode()
	}
	var body io.Reader
	switch {
	case req.JSON != nil:
		b, err := json.Marshal(req.JSON)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	case req.Body != nil:
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	if (body != nil || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch) && hr.Header.Get("Content-Type") == "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json")
	c.authorize(hr)
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, reachError(c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := decodeError(resp.StatusCode, data)
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		return data, e
	}
	return data, nil
}

// reachError explains a failed connection, with the fix for the usual
// causes.
func reachError(base string, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("cannot verify the Palisade server at %s: %w (trust its CA: --ca <data>/ca.crt or %s)", base, err, EnvCA)
	case errors.As(err, &he):
		return fmt.Errorf("the Palisade server at %s has no certificate for that name: %w (use a name it serves, or --allowed-host on the server)", base, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("the Palisade server at %s serves plain HTTP (--insecure-listen): use an http:// URL: %w", base, err)
	}
	return fmt.Errorf("cannot reach the Palisade server at %s: %w (is `palisade server` running? set --server or %s)", base, err, EnvServer)
}

// authorize adds the client's identity to a request.
func (c *Client) authorize(r *http.Request) {
	r.Header.Set("User-Agent", c.ua)
	if c.token != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
}

func decodeError(status int, data []byte) *api.Error {
	e := &api.Error{}
	if json.Unmarshal(data, e) != nil || e.Message == "" {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		e.Message = msg
	}
	e.Status = status
	if status == http.StatusUnauthorized && !strings.Contains(e.Message, "token") && !strings.Contains(e.Message, "certificate") {
		e.Message += " (give an API token with --token, --token-file or PALISADE_TOKEN)"
	}
	return e
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return api.IsStatus(err, http.StatusNotFound) }

// AsError returns err's *api.Error, if it is one.
func AsError(err error) (*api.Error, bool) {
	var e *api.Error
	ok := errors.As(err, &e)
	return e, ok
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.Do(ctx, Request{Method: http.MethodGet, Path: path, Query: q}, out)
}

// PathEscape escapes one path segment.
func PathEscape(s string) string { return url.PathEscape(s) }
