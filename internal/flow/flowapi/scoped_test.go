package flowapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// onlyFrom sees the flows from some source addresses, and the agents of
// the nodes it names.
type onlyFrom map[string]bool

func (onlyFrom) All() bool                { return false }
func (o onlyFrom) Flow(f *flow.Flow) bool { return o[f.Src.IP] }
func (o onlyFrom) Node(name string) bool  { return o[name] }

// A restricted caller's search reads page after page until its limit of
// visible flows is filled: here 3 visible flows among 6,000, 2,000 of them
// starting at the same instant as each visible one, newest first, none
// twice; top counts only the visible flows; a flow it may not see is
// "not found"; the agent list and configuration show only its nodes.
func TestScopedSearchPages(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := flow.NewService(st, nil, flow.Options{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	var seq uint64
	for b := range 3 {
		at := base.Add(time.Duration(b) * time.Minute)
		bt := flow.Batch{Agent: "a", Node: "n1"}
		for i := range 2000 {
			src := fmt.Sprintf("10.1.%d.%d", i>>8, i&255)
			if i == 1999-b*700 {
				src = "10.9.9.9" // the visible one of this instant
			}
			seq++
			bt.Observations = append(bt.Observations, flow.Observation{Agent: "a", Seq: seq, Mode: flow.DetailedMode,
				Point: flow.ObservationPoint{Node: "n1", Interface: "eth0", Kind: "node"},
				Tuple: flow.Tuple{Proto: "tcp", SrcIP: src, SrcPort: uint16(20000 + i), DstIP: "10.2.0.1", DstPort: 80},
				Start: at, End: at.Add(time.Second), FwdPackets: 1, FwdBytes: 100, Conns: 1, NewConns: 1})
		}
		if err := svc.Ingest(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	svc.Agents.Heartbeat("n2", flow.Heartbeat{Agent: "b"}, time.Now())
	vis := onlyFrom{"10.9.9.9": true, "n2": true}
	mux := http.NewServeMux()
	if err := httpapi.Mount(mux, flowapi.ScopedRoutes(svc, func(*http.Request) flowapi.Visibility { return vis }), nil); err != nil {
		t.Fatal(err)
	}
	get := func(path string, out any) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if out != nil && rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code
	}
	for _, limit := range []int{1, 2, 3, 10} {
		var fl api.FlowList
		if code := get(fmt.Sprintf("/api/v1/flows?from=1h&limit=%d", limit), &fl); code != 200 {
			t.Fatalf("limit %d: %d", limit, code)
		}
		if len(fl.Flows) != min(limit, 3) {
			t.Fatalf("limit %d: %d flows", limit, len(fl.Flows))
		}
		for i, f := range fl.Flows {
			if f.Src.IP != "10.9.9.9" || (i > 0 && !f.Start.Before(fl.Flows[i-1].Start)) {
				t.Fatalf("limit %d: flow %d from %s at %s", limit, i, f.Src.IP, f.Start)
			}
		}
	}
	var top api.TopList
	if get("/api/v1/flows/top?from=1h&by=src.ip", &top); len(top.Entries) != 1 || top.Entries[0].Flows != 3 {
		t.Fatalf("top: %+v", top)
	}
	all, _ := svc.Search("", base.Add(-time.Minute), time.Now(), 1)
	if code := get("/api/v1/flows/"+all[0].ID, nil); all[0].Src.IP != "10.9.9.9" && code != 404 {
		t.Fatalf("an invisible flow by ID: %d", code)
	}
	var agents api.AgentList
	if get("/api/v1/agents", &agents); len(agents.Agents) != 1 || agents.Agents[0].Node != "n2" {
		t.Fatalf("agents: %+v, want n2's only", agents)
	}
	if code := get("/api/v1/agents/n1/config", nil); code != 404 {
		t.Fatalf("the configuration of a node not seen: %d, want 404", code)
	}
	if code := get("/api/v1/agents/n2/config", nil); code != 200 {
		t.Fatalf("the configuration of a node seen: %d", code)
	}
}
