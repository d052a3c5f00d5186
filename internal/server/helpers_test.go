package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// do sends an API request as token ("" for the admin), body as JSON when
// not empty.
func do(t *testing.T, s *Server, token, method, path, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token == "" {
		token = s.AdminToken()
	}
	if token != "-" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// status sends a request (see do) and returns the answer's status.
func status(t *testing.T, s *Server, token, method, path, body string) int {
	t.Helper()
	resp := do(t, s, token, method, path, body)
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode
}
