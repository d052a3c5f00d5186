package main

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

// TestMakeBuildVersion: a `make build` binary says which version and commit
// it is, in `palisade version` and in the server's /api/v1/status.
func TestMakeBuildVersion(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the test needs the git checkout)", err)
	}
	commit := strings.TrimSpace(string(head))
	bin := makeBuild(t, t.TempDir())
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(out))
	if strings.HasPrefix(v, "palisade dev") || !strings.Contains(v, "(commit "+commit) {
		t.Errorf("palisade version = %q, want a version other than dev and commit %s", v, commit)
	}

	data := t.TempDir()
	srv := exec.Command(bin, "server", "--data", data, "--listen", "127.0.0.1:0")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
				lines <- url
			}
		}
	}()
	var url string
	select {
	case url = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("server did not say where it listens")
	}
	var st struct{ Version, Commit string }
	if err := dataDirClient(t, strings.TrimRight(url, "/"), data, server.AdminTokenFile).Do(context.Background(), client.Request{Method: "GET", Path: "/api/v1/status"}, &st); err != nil {
		t.Fatalf("/api/v1/status: %v", err)
	}
	if st.Version == "" || st.Version == "dev" || !strings.HasPrefix(st.Commit, commit) || !strings.Contains(v, st.Version) {
		t.Errorf("/api/v1/status version %q commit %q; palisade version says %q", st.Version, st.Commit, v)
	}
}
