package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTLSBlackBox: `palisade server` serves HTTPS by default with a CA it
// creates once in <data>/ca.crt; the CLI trusts it with --ca or
// PALISADE_CA and says what to do without; plain HTTP only with
// --insecure-listen on loopback.
func TestTLSBlackBox(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	serve := func() (*cliProcess, string) {
		p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
		l := p.line(t, "listening on", 60*time.Second)
		return p, strings.TrimSpace(l[strings.LastIndex(l, " "):])
	}
	p, base := serve()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("serving %s", base)
	}
	ca := filepath.Join(dir, "ca.crt")
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(dir, "admin-token")
	noCA := map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": "", "PALISADE_CA": ""}
	if _, _, err := runCLI(t, noCA, "inventory", "search", "--token-file", admin); err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Fatalf("without the CA: %v", err)
	}
	if _, _, err := runCLI(t, noCA, "inventory", "search", "--token-file", admin, "--ca", ca); err != nil {
		t.Fatalf("--ca: %v", err)
	}
	if _, _, err := runCLI(t, map[string]string{"PALISADE_SERVER": base, "PALISADE_CA": ca}, "inventory", "search", "--token-file", admin); err != nil {
		t.Fatalf("PALISADE_CA: %v", err)
	}
	if !strings.Contains(p.errText(), "--ca "+ca) {
		t.Errorf("the server does not say how to trust it:\n%s", p.errText())
	}
	p.stop(t, syscall.SIGTERM)
	p, _ = serve()
	again, _ := os.ReadFile(ca)
	if string(again) != string(caPEM) {
		t.Fatal("the CA changed on restart")
	}
	p.stop(t, syscall.SIGTERM)

	bad := startCLI(t, "server", "--data", dir, "--insecure-listen", "0.0.0.0:0")
	done := make(chan struct{})
	go func() { bad.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("plain HTTP on 0.0.0.0 was served")
	}
	if !strings.Contains(bad.errText(), "loopback") {
		t.Fatalf("--insecure-listen 0.0.0.0: %s", bad.errText())
	}
	plain := startCLI(t, "server", "--data", dir, "--insecure-listen", "127.0.0.1:0")
	defer plain.stop(t, syscall.SIGTERM)
	l := plain.line(t, "listening on", 60*time.Second)
	pbase := strings.TrimSpace(l[strings.LastIndex(l, " "):])
	if !strings.HasPrefix(pbase, "http://127.0.0.1:") {
		t.Fatalf("--insecure-listen serves %s", pbase)
	}
	if _, _, err := runCLI(t, map[string]string{"PALISADE_SERVER": pbase}, "inventory", "search", "--token-file", admin); err != nil {
		t.Fatalf("plain HTTP on loopback: %v", err)
	}
}
