package agent_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/version"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAgentNetNSNameOrPath: NetNS (--netns) takes an `ip netns` name as
// well as a path, and either way the agent observes the node's pods. The
// server's mode wins over an explicit Mode (--mode), and the agent says so
// once, in the words `palisade agent --help` promises; with no explicit
// Mode, nothing is said.
func TestAgentNetNSNameOrPath(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	for _, c := range []struct {
		name, netns, mode string
		wantMsg           bool
	}{
		{"name", n1.NS, flow.DetailedMode, true},
		{"path", agenttest.Path(n1.NS), "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, url := newServer(t, flow.ConversationMode)
			var logs syncBuffer
			ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: c.netns, Mode: c.mode,
				ConversationInterval: 300 * time.Millisecond, DrainInterval: 100 * time.Millisecond,
				ConfigPoll: 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
				Log: slog.New(slog.NewTextHandler(&logs, nil))})
			waitFor(t, 5*time.Second, "the server's mode", func() bool { return ag.a.Mode() == flow.ConversationMode })
			conn, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 100)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the connection reported from node1's pod veth", func() bool {
				for _, o := range srv.observations() {
					if o.Point.Interface == "vethp1" && o.Tuple.SrcIP == conn.Local.Addr().String() && o.Tuple.DstPort == 8080 {
						return true
					}
				}
				return false
			})
			ag.stop(t)
			// Heartbeats say which build the agent is.
			srv.mu.Lock()
			beats := slices.Clone(srv.beats)
			srv.mu.Unlock()
			if len(beats) == 0 || beats[0].Version == "" || beats[0].Version != version.Version || beats[0].Commit != version.Commit {
				t.Errorf("heartbeats %+v: want version %q commit %q", beats, version.Version, version.Commit)
			}
			msg := "mode detailed from --mode replaced by conversation from the server; change it with `palisade agent mode node1 detailed`"
			if got := strings.Count(logs.String(), msg); got != map[bool]int{true: 1, false: 0}[c.wantMsg] {
				t.Errorf("the precedence message appears %d times, want it %v; log:\n%s", got, c.wantMsg, logs.String())
			}
		})
	}
	if _, err := agent.New(agent.Config{Server: "http://127.0.0.1:1", Node: "n", NetNS: "nosuchns"}); err != nil {
		t.Fatalf("New: %v", err)
	}
	err = agent.Run(t.Context(), agent.Config{Server: "http://127.0.0.1:1", Node: "n", NetNS: "nosuchns", BPFFS: "-", SpoolDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "/run/netns/nosuchns") || !strings.Contains(err.Error(), "ip netns list") {
		t.Errorf("unknown netns name: %v", err)
	}
}
