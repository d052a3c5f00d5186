package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/server"
)

func TestByteSizeFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"1073741824", 1 << 30}, {"20GiB", 20 << 30}, {"500MB", 500e6}, {"1.5 kb", 1500}, {"7B", 7}} {
		var b byteSize
		if err := b.Set(c.in); err != nil || int64(b) != c.want {
			t.Errorf("%q: %d %v, want %d", c.in, b, err, c.want)
		}
	}
	for _, bad := range []string{"", "-1GB", "ten", "5XB"} {
		var b byteSize
		if err := b.Set(bad); err == nil || !strings.Contains(err.Error(), "want a size") {
			t.Errorf("%q accepted: %d", bad, b)
		}
	}
	root := newRootCmd()
	root.SetArgs([]string{"server", "--flow-max-bytes", "lots"})
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "flow-max-bytes") {
		t.Fatalf("bad --flow-max-bytes: %v", err)
	}
}

// The server fixes the data directory's permissions at start, and reports
// the flow store's retention (age and size cap, the default cap a share of
// the free space) in /api/v1/status.
func TestServerDataDirAndFlowRetentionStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "flows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "agent-token"), []byte("0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		maxBytes int64
		check    func(int64) bool
	}{{0, func(v int64) bool { return v > 1<<20 }}, {123456789, func(v int64) bool { return v == 123456789 }}} {
		s, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: "127.0.0.1:0", FlowRetention: 36 * time.Hour, FlowMaxBytes: c.maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Client("").Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.Stop()
		if st.FlowStore.MaxAge != "36h0m0s" || !c.check(st.FlowStore.MaxBytes) {
			t.Fatalf("status with --flow-max-bytes %d: %+v", c.maxBytes, st.FlowStore)
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "flows"), filepath.Join(dir, "agent-token")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v", p, fi.Mode().Perm())
		}
	}
}
