package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// postBatch sends an agent batch the way agents do.
func postBatch(t *testing.T, s *server.Server, b flow.Batch) {
	t.Helper()
	postBatchWith(t, s.Client(s.AgentToken()), b)
}

// A reported flow is returned by `flows search` within 3 s (the server's
// dedup window is 30 s) and printed by a running `flows follow`.
func TestFlowsFollowAndSearchWithinSeconds(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuf
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"flows", "follow", "dst.port = 8080", "--server", s.URL(), "--token", s.AdminToken()})
		done <- root.ExecuteContext(ctx)
	}()
	time.Sleep(300 * time.Millisecond) // the follower connects
	now := time.Now()
	tu := flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", SrcPort: 40000, DstIP: "10.244.1.11", DstPort: 8080}
	other := flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", SrcPort: 40001, DstIP: "10.244.1.11", DstPort: 9090}
	obs := func(seq uint64, tu flow.Tuple) flow.Observation {
		return flow.Observation{Agent: "agent-node1", Seq: seq, Mode: flow.DetailedMode,
			Point: flow.ObservationPoint{Node: "node1", Interface: "veth1", Kind: "pod"}, Tuple: tu,
			Start: now.Add(-time.Second), End: now, FwdPackets: 3, RevPackets: 2, Flags: []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN}, Conns: 1, NewConns: 1}
	}
	posted := time.Now()
	postBatch(t, s, flow.Batch{Agent: "agent-node1", Node: "node1", Observations: []flow.Observation{obs(1, tu), obs(2, other)}})
	var found time.Duration
	for found == 0 && time.Since(posted) < 10*time.Second {
		res, err := s.Client("").SearchFlows(context.Background(), client.FlowQuery{From: "5m", Filter: "dst.port = 8080"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Flows) == 1 {
			found = time.Since(posted)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if found == 0 || found > 3*time.Second {
		t.Fatalf("searchable after %v", found)
	}
	for start := time.Now(); !strings.Contains(out.String(), "10.244.1.11:8080") && time.Since(start) < 5*time.Second; {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow: %v\n%s", err, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "10.244.1.11:8080") || strings.Contains(got, ":9090") || strings.Count(got, "\n") != 1 {
		t.Fatalf("follow printed:\n%s", got)
	}
	t.Logf("searchable %v after the report; follow printed: %s", found, got)

	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"flows", "follow", "dst.port = = 1", "--server", s.URL(), "--token", s.AdminToken()})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "^") {
		t.Fatalf("bad filter: %v", err)
	}
}
