// Package apiclient is the CLI's small client for the Palisade REST API.
package apiclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// DefaultServer is used when neither --server nor PALISADE_SERVER is set.
const DefaultServer = "http://127.0.0.1:7070"

// Server returns flagValue, else $PALISADE_SERVER, else DefaultServer.
func Server(flagValue string) string {
	if flagValue != "" {
		return strings.TrimRight(flagValue, "/")
	}
	if v := os.Getenv("PALISADE_SERVER"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return DefaultServer
}

// Error is an error answered by the API.
type Error struct {
	Status   int
	Message  string `json:"error"`
	Position int    `json:"position"`
}

func (e *Error) Error() string {
	if e.Position > 0 {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when non-nil).
func Do(method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := os.Getenv("PALISADE_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Palisade server: %w (is `palisade server` running? set --server or PALISADE_SERVER)", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}
