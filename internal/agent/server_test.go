package agent_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
)

type noInventory struct{}

func (noInventory) WorkloadAt(string, time.Time) (*inventory.Workload, bool) { return nil, false }
func (noInventory) ServiceFor(string, uint16, string, time.Time) (*inventory.Workload, bool) {
	return nil, false
}

// TestAgentWithFlowService: the agent against the real server side
// (flow.Service over the embedded store) on a VXLAN cluster. The pod flow
// seen at the pod veth and the vxlan device becomes one flow carrying both
// points, related to the UDP 4789 tunnel flow that carried it.
func TestAgentWithFlowService(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := flow.NewService(st, noInventory{}, flow.Options{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The server decides the mode; its default is conversation.
	if err := svc.Agents.SetConfig("node1", flow.AgentConfig{Mode: flow.DetailedMode}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := httpapi.Mount(mux, flowapi.Routes(svc), nil); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(mux)
	defer hs.Close()

	lab := agenttest.New(t)
	cl := lab.TwoNodes("vxlan")
	n1, p1, p3 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p3")
	ag := start(t, agent.Config{Server: hs.URL, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: flow.DetailedMode,
		DetailedInterval: 200 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
	ts, err := agenttest.ListenTCP(p3.NS, p3.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	c, err := agenttest.Exchange(p1.NS, p3.IP+":8080", 3000)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	ag.stop(t)
	if err := svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	flows, err := svc.Search("", time.Now().Add(-time.Minute), time.Now().Add(time.Minute), 1000)
	if err != nil {
		t.Fatal(err)
	}
	// The connection may span the server's dedup windows: one flow per
	// window, each with the packets of its window.
	var n int
	var fwd, rev uint64
	ifaces := map[string]bool{}
	related := false
	for _, f := range flows {
		if f.Proto != "tcp" || f.Src.IP != p1.IP || f.Src.Port != c.Local.Port() || f.Dst.IP != p3.IP || f.Dst.Port != 8080 {
			continue
		}
		n++
		fwd += f.FwdPackets
		rev += f.RevPackets
		for _, p := range f.Points {
			ifaces[p.Interface] = true
		}
		for _, r := range f.Related {
			if r.Reason == flow.ReasonVXLAN {
				related = true
			}
		}
	}
	if n == 0 {
		t.Fatalf("no pod flow among %d flows: %+v", len(flows), flows)
	}
	if !ifaces["vethp1"] || !ifaces["vxlan0"] || fwd != uint64(c.SegsOut) || rev != uint64(c.SegsIn) {
		t.Errorf("pod flow (%d records): points %v packets %d/%d (kernel %d/%d)", n, ifaces, fwd, rev, c.SegsOut, c.SegsIn)
	}
	if !related {
		t.Error("pod flow not related to its tunnel flow")
	}
	for _, a := range svc.Agents.List() {
		if a.Node == "node1" && (a.Health.FlowsSeen == 0 || a.Health.FlowsSent == 0) {
			t.Errorf("agent health not visible: %+v", a)
		}
	}
}
