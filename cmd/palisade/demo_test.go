package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// makeBuild builds the binary as `make build` does, at dir/bin/palisade.
func makeBuild(t *testing.T, dir string) string {
	t.Helper()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the test needs the git checkout)", err)
	}
	bin := filepath.Join(dir, "bin", "palisade")
	if out, err := exec.Command("make", "-C", strings.TrimSpace(string(root)), "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDemo runs `./bin/palisade demo --duration 60s` from a user's directory
// as a user would: standard output holds only the demo's steps and the
// commands to try (the components' request logs go to demo.log), every
// printed command run as printed exits 0, and near the end `flows top --by
// dst.port` is led by an application port, with no portless ICMPv6 noise.
func TestDemo(t *testing.T) {
	kube := rootAndPrivateAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	makeBuild(t, work)
	dataDir := filepath.Join(work, "data")
	labName := fmt.Sprintf("dm%d", os.Getpid()%100000)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	demo := exec.CommandContext(ctx, "./bin/palisade", "demo", "--duration", "60s", "--data", dataDir,
		"--listen", listen, "--kubeconfig", kube.Kubeconfig, "--lab", labName)
	demo.Dir = work
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SUDO_USER=") {
			demo.Env = append(demo.Env, e)
		}
	}
	var stderr strings.Builder
	demo.Stderr = &stderr
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = demo.Process.Kill() })

	var (
		mu       sync.Mutex
		lines    []string
		commands = make(chan []string, 1)
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		var cmds []string
		inBlock := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			switch {
			case strings.HasPrefix(line, "Palisade is running"):
				inBlock = true
			case inBlock && strings.HasPrefix(line, "  "):
				cmds = append(cmds, strings.TrimSpace(line))
			case inBlock && strings.HasPrefix(line, "Ctrl-C"):
				commands <- cmds
				inBlock = false
			}
		}
	}()

	var cmds []string
	select {
	case cmds = <-commands:
	case <-readDone:
		t.Fatalf("the demo ended before printing its commands:\n%s\nstderr:\n%s", strings.Join(lines, "\n"), stderr.String())
	}
	if len(cmds) < 6 {
		t.Fatalf("only %d commands printed: %q", len(cmds), cmds)
	}
	t.Logf("commands printed %s after start", time.Since(started).Round(time.Second))
	// Commands run one by one, in a shell, after the exports printed
	// before them (as in the user's shell).
	var exports []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "export ") {
			exports = append(exports, c)
			continue
		}
		if !strings.HasPrefix(c, "./bin/palisade ") && !strings.HasPrefix(c, "curl ") {
			t.Errorf("printed command %q does not start with ./bin/palisade (the binary as run from here) or curl", c)
		}
		run := exec.Command("sh", "-c", strings.Join(append(slices.Clone(exports), c), "\n"))
		run.Dir = work
		if out, err := run.CombinedOutput(); err != nil {
			t.Errorf("printed command %q: %v\n%s", c, err, out)
		} else if strings.HasPrefix(c, "curl ") && strings.Contains(string(out), `"error"`) {
			t.Errorf("printed command %q: %s", c, out)
		}
	}
	if len(exports) != 3 {
		t.Errorf("exports printed: %q, want PALISADE_SERVER, PALISADE_CA and PALISADE_TOKEN", exports)
	}

	// Near the end of the 60 s, the busiest destination ports are the app's.
	time.Sleep(time.Until(started.Add(50 * time.Second)))
	top := exec.Command("sh", "-c", strings.Join(append(exports, "./bin/palisade flows top --by dst.port -o json"), "\n"))
	top.Dir = work
	out, err := top.Output()
	if err != nil {
		t.Fatalf("flows top: %v\n%s", err, out)
	}
	var res struct {
		Entries []struct {
			Key   string `json:"key"`
			Flows uint64 `json:"flows"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("flows top: %v\n%s", err, out)
	}
	t.Logf("flows top --by dst.port near the end:\n%s", out)
	appPorts := []string{"80", "8079", "27017", "666"}
	if len(res.Entries) == 0 || !slices.Contains(appPorts, res.Entries[0].Key) {
		t.Errorf("flows top --by dst.port is not led by an application port %v: %s", appPorts, out)
	}
	for _, e := range res.Entries {
		if e.Key == "0" || strings.HasPrefix(e.Key, "icmp") && !regexp.MustCompile(`^icmp(v6)?/[a-z]`).MatchString(e.Key) {
			t.Errorf("flows top entry %q: ICMP flows must show their type", e.Key)
		}
	}

	err = demo.Wait()
	<-readDone
	if err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
	}
	// Standard output: the demo's own lines only.
	allowed := regexp.MustCompile(`^(|[1-6]/6 .*|    \S.*|  (\./bin/palisade|curl|export) .*|Component logs go to .*|Palisade is running.*|token to .* In another shell, from this directory:|Ctrl-C stops.*|removing the lab\.\.\.)$`)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the demo's standard output:\n%s\nstandard error:\n%s", strings.Join(lines, "\n"), stderr.String())
	for _, l := range lines {
		if !allowed.MatchString(l) || strings.Contains(l, "level=") || strings.Contains(l, "/v2/") {
			t.Errorf("stdout line not the demo's own: %q", l)
		}
	}
	if strings.Contains(stderr.String(), "/v2/") || strings.Contains(stderr.String(), "level=INFO") || strings.Contains(stderr.String(), "fixed permissions") {
		t.Errorf("per-request or info logs on the terminal:\n%s", stderr.String())
	}
	logs, err := os.ReadFile(filepath.Join(dataDir, "demo.log"))
	if err != nil || !strings.Contains(string(logs), "lab ready") {
		t.Errorf("demo.log lacks the components' logs: %v", err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), filepath.Join(dataDir, "demo.log")) {
		t.Error("the demo does not say where its log is")
	}
}
