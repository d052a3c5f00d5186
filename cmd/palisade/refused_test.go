package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/report"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/server"
)

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			n++
		}
	}
	return n
}

// TestRefusedAgentSaysSo: an agent with a wrong token logs the refusal at
// once and on every retry (with backoff), keeps its batches spooled, and
// GET /api/v1/agents shows the node as refused, with why, until a batch is
// accepted.
func TestRefusedAgentSaysSo(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var logs logLines
	rep, err := report.Open(report.Config{Server: s.URL(), Node: "n9", Token: "not-the-token", SpoolDir: t.TempDir(),
		RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	obs := []flow.Observation{{Mode: flow.DetailedMode, Point: flow.ObservationPoint{Node: "n9", Interface: "veth1", Kind: "pod"},
		Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.0.0.1", SrcPort: 1, DstIP: "10.0.0.2", DstPort: 80}, Start: now, End: now, FwdPackets: 1, Conns: 1}}
	if err := rep.Submit(obs, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep.Run(ctx)
	n := logs.count("level=ERROR") - 0
	if n < 3 || logs.count("refuses this agent") != n || rep.Pending() != 1 {
		t.Fatalf("%d error lines in %v, %d pending:\n%s", n, time.Since(start), rep.Pending(), strings.Join(logs.lines, ""))
	}
	if n > 10 {
		t.Fatalf("%d refusals logged in 1.5 s: no backoff", n)
	}
	agents, err := s.Client("").Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(agents.Agents) != 1 || agents.Agents[0].Node != "n9" || agents.Agents[0].Refused == nil ||
		agents.Agents[0].Refused.Count < 3 || !strings.Contains(agents.Agents[0].Refused.Reason, "unauthenticated") {
		t.Fatalf("GET /api/v1/agents: %+v", agents)
	}
	// The right token: delivered, no longer refused.
	rep2, err := report.Open(report.Config{Server: s.URL(), Node: "n9", Token: s.AgentToken(), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rep2.Submit(obs, nil)
	ctx2, cancel2 := context.WithCancel(context.Background())
	go rep2.Run(ctx2)
	for deadline := time.Now().Add(10 * time.Second); rep2.Pending() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel2()
	agents, _ = s.Client("").Agents(context.Background())
	if len(agents.Agents) != 1 || agents.Agents[0].Refused != nil || agents.Agents[0].Batches != 1 {
		t.Fatalf("after an accepted batch: %+v", agents)
	}
	// Refusals of unknown nodes are bounded.
	for i := range 300 {
		req, _ := http.NewRequest("POST", s.URL()+"/api/v1/agents/x"+strings.Repeat("y", i%7)+string(rune('a'+i%26))+"-"+time.Now().Format("150405.000000000")+"/flows", bytes.NewReader([]byte("{}")))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	agents, _ = s.Client("").Agents(context.Background())
	if len(agents.Agents) > 257 {
		t.Fatalf("%d agents listed after 300 refused random nodes", len(agents.Agents))
	}
}
