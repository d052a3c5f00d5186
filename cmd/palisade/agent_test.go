package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/flow"
)

// TestAgentModeCommand: `palisade agent mode NODE detailed` PUTs the node's
// config with the token and prints what the server now holds.
func TestAgentModeCommand(t *testing.T) {
	mode := flow.ConversationMode
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/agents/node-1/config" || r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, `{"error":"no"}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPut {
			var c flow.AgentConfig
			_ = json.NewDecoder(r.Body).Decode(&c)
			mode = c.Mode
		}
		_ = json.NewEncoder(w).Encode(flow.AgentConfig{Mode: mode})
	}))
	defer srv.Close()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"agent", "mode", "node-1", "detailed", "--server", srv.URL, "--token", "t0k"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if mode != flow.DetailedMode || !strings.Contains(out.String(), `"mode":"detailed"`) {
		t.Fatalf("mode %q, output %q", mode, out.String())
	}
	root = newRootCmd()
	root.SetArgs([]string{"agent", "mode", "node-1", "fast", "--server", srv.URL})
	if err := root.Execute(); err == nil {
		t.Fatal("bad mode accepted")
	}
}
