package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/client"
)

// dataDirClient is a client for the `palisade server --data dir` serving
// at base, with the token in the data directory's file tokenFile
// ("admin-token"; "agent-token" of a plain-HTTP server), trusting its CA when it has one.
func dataDirClient(t *testing.T, base, dir, tokenFile string) *client.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	o := client.Options{Server: base, Token: strings.TrimSpace(string(tok))}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
		o.CAFile = filepath.Join(dir, "ca.crt")
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// postBatchWith sends an agent batch the way agents do.
func postBatchWith(t *testing.T, c *client.Client, b flow.Batch) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	json.NewEncoder(zw).Encode(b)
	zw.Close()
	if _, err := c.PostFlows(context.Background(), b.Node, buf.Bytes()); err != nil {
		t.Fatalf("post batch: %v", err)
	}
}
