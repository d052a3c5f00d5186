package flow_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// bearerGuard admits requests carrying the header value want.
func bearerGuard(want string) httpapi.Guard {
	return func(rt httpapi.Route, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != want {
				rt.Refuse(w, api.Errorf(http.StatusUnauthorized, "unauthenticated"))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

var t0 = time.Now().Add(-10 * time.Minute).Truncate(time.Second).UTC()

func observation(seq uint64, iface string, tu flow.Tuple) flow.Observation {
	return flow.Observation{
		Agent: "agent-node1", Seq: seq, Mode: flow.ConversationMode,
		Point: flow.ObservationPoint{Node: "node1", Interface: iface, Kind: "pod", Pod: "default/" + iface},
		Tuple: tu, Start: t0, End: t0.Add(15 * time.Second),
		FwdPackets: 3, FwdBytes: 300, RevPackets: 2, RevBytes: 200, Flags: []string{flow.FlagSYN, flow.FlagSYNACK}, Conns: 1,
	}
}

// batch: pod1→svc:80 at veth1, pod1→pod2:8080 at veth2 (DNAT), and the
// same pod1→pod2 flow at veth1b... (a second point of the post-NAT flow).
func testBatch(firstSeq uint64) flow.Batch {
	pre := flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", DstIP: "10.96.0.10", DstPort: 80}
	post := flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", DstIP: "10.244.1.11", DstPort: 8080}
	return flow.Batch{
		Agent: "agent-node1", Node: "node1",
		Observations: []flow.Observation{
			observation(firstSeq, "veth1", pre),
			observation(firstSeq+1, "veth2", post),
			observation(firstSeq+2, "cni0", post),
		},
		NAT: []flow.NAT{{Node: "node1", ConnID: 1,
			Original: flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", SrcPort: 40000, DstIP: "10.96.0.10", DstPort: 80},
			Reply:    flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.11", SrcPort: 8080, DstIP: "10.244.1.10", DstPort: 40000}}},
	}
}

type env struct {
	t   *testing.T
	dir string
	st  *store.Store
	svc *flow.Service
	srv *httptest.Server
}

const token = "Bearer s3cret"

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := flow.NewService(st, nil, flow.Options{MaxBatchBytes: 64 << 10, MaxBatchDecoded: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := httpapi.Mount(mux, flowapi.Routes(svc), bearerGuard(token)); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, st: st, svc: svc, srv: httptest.NewServer(mux)}
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	e.srv.Close()
	e.st.Close()
}

func gz(v any) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if raw, ok := v.([]byte); ok {
		zw.Write(raw)
	} else {
		json.NewEncoder(zw).Encode(v)
	}
	zw.Close()
	return buf.Bytes()
}

func (e *env) post(path string, body []byte, auth bool) (int, map[string]any) {
	req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "application/json")
	if auth {
		req.Header.Set("Authorization", token)
	}
	return e.do(req)
}

func (e *env) get(path string) (int, map[string]any) {
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", token)
	return e.do(req)
}

func (e *env) do(req *http.Request) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (e *env) search(filter string) []flow.Flow {
	e.t.Helper()
	fs, err := e.svc.Search(filter, t0.Add(-time.Hour), time.Now(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return fs
}

func TestIngestSearchGet(t *testing.T) {
	e := newEnv(t, t.TempDir())
	if code, body := e.post("/api/v1/agents/node1/flows", gz(testBatch(1)), true); code != 200 {
		t.Fatalf("ingest: %d %v", code, body)
	}
	if len(e.search("")) != 0 {
		t.Fatalf("flows stored before their window closed")
	}
	if err := e.svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	fs := e.search("")
	if len(fs) != 2 {
		t.Fatalf("want svc flow + pod flow, got %d", len(fs))
	}
	code, body := e.get("/api/v1/flows?" + url.Values{"filter": {`dst.port = 8080 and observed_at contains cni0 and related contains "clusterip-dnat"`}, "from": {"1h"}}.Encode())
	if code != 200 || len(body["flows"].([]any)) != 1 {
		t.Fatalf("search: %d %v", code, body)
	}
	id := body["flows"].([]any)[0].(map[string]any)["id"].(string)
	code, body = e.get("/api/v1/flows/" + id)
	if code != 200 || len(body["points"].([]any)) != 2 || len(body["relatedFlows"].([]any)) != 1 {
		t.Fatalf("get: %d %v", code, body)
	}
	code, body = e.get("/api/v1/flows/top?by=dst.port&from=1h")
	if code != 200 || len(body["entries"].([]any)) != 2 {
		t.Fatalf("top: %d %v", code, body)
	}
	code, body = e.get("/api/v1/flows/top?by=src.ip&from=1h")
	if code != 200 || len(body["entries"].([]any)) != 1 {
		t.Fatalf("top by src.ip: %d %v", code, body)
	}
	if code, _ = e.get("/api/v1/flows/top?by=bytes"); code != 400 {
		t.Fatalf("top by a per-flow field: %d", code)
	}
	code, body = e.get("/api/v1/flows?filter=" + url.QueryEscape(`src.ip = 1 and and`))
	if code != 400 || body["position"] == nil {
		t.Fatalf("bad filter: %d %v", code, body)
	}
	code, body = e.get("/api/v1/flows?filter=" + url.QueryEscape(`src.nope = 1`))
	if code != 400 || body["position"].(float64) != 1 {
		t.Fatalf("unknown field: %d %v", code, body)
	}
}

// A batch resent (lost ack, agent restart, server restart) stores nothing
// twice, and what was acknowledged but not yet a flow survives a restart.
func TestIdempotentAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	b := testBatch(1)
	if err := e.svc.Ingest(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Ingest(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if m := e.svc.Metrics(); m.Duplicates != 3 || m.Observations != 3 {
		t.Fatalf("metrics: %+v", m)
	}
	e.close() // "crash" before the window closed
	e = newEnv(t, dir)
	if err := e.svc.Ingest(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	if fs := e.search(""); len(fs) != 2 {
		t.Fatalf("after restart: %d flows", len(fs))
	}
	e.close()
	e = newEnv(t, dir)
	if err := e.svc.Ingest(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	e.svc.Flush(true)
	if fs := e.search(""); len(fs) != 2 {
		t.Fatalf("resend after store: %d flows", len(fs))
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, t.TempDir())
	if err := e.svc.Ingest(context.Background(), testBatch(1)); err != nil {
		t.Fatal(err)
	}
	e.svc.Flush(true)
	before := len(e.search(""))

	bad := testBatch(10)
	bad.Observations[1].Tuple.SrcIP = "10.244.1"
	big := testBatch(20)
	for i := range 2000 {
		big.Observations = append(big.Observations, observation(uint64(100+i), strings.Repeat("x", 200), big.Observations[0].Tuple))
	}
	for _, c := range []struct {
		name  string
		path  string
		body  []byte
		auth  bool
		code  int
		field string
	}{
		{"unauthenticated", "/api/v1/agents/node1/flows", gz(testBatch(30)), false, 401, ""},
		{"not gzip", "/api/v1/agents/node1/flows", []byte("{"), true, 400, ""},
		{"bad json", "/api/v1/agents/node1/flows", gz([]byte(`{"agent": 3}`)), true, 400, ""},
		{"bad record", "/api/v1/agents/node1/flows", gz(bad), true, 400, "observations[1].tuple.srcIP"},
		{"wrong node", "/api/v1/agents/node2/flows", gz(testBatch(40)), true, 400, "node"},
		{"oversized", "/api/v1/agents/node1/flows", bytes.Repeat([]byte("x"), 70<<10), true, 413, ""},
		{"oversized decoded", "/api/v1/agents/node1/flows", gz(big), true, 413, ""},
	} {
		code, body := e.post(c.path, c.body, c.auth)
		if code != c.code || c.field != "" && body["field"] != c.field {
			t.Errorf("%s: %d %v", c.name, code, body)
		}
	}
	m := e.svc.Metrics()
	if m.RefusedUnauthenticated != 1 || m.RefusedMalformed != 4 || m.RefusedOversized != 2 {
		t.Fatalf("refusals not counted: %+v", m)
	}
	e.svc.Flush(true)
	if after := len(e.search("")); after != before {
		t.Fatalf("refused batches changed the store: %d → %d", before, after)
	}
	if m.Observations != 3 {
		t.Fatalf("refused records accepted: %+v", m)
	}
}

func TestAgentConfig(t *testing.T) {
	e := newEnv(t, t.TempDir())
	req, _ := http.NewRequest("PUT", e.srv.URL+"/api/v1/agents/node1/config", strings.NewReader(`{"mode":"detailed"}`))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	if code, _ := e.do(req); code != 200 {
		t.Fatalf("put config: %d", code)
	}
	if code, body := e.post("/api/v1/agents/node1/flows", gz(testBatch(1)), true); code != 200 || body["config"].(map[string]any)["mode"] != "detailed" {
		t.Fatalf("ingest response carries the mode: %v", body)
	}
	req, _ = http.NewRequest("POST", e.srv.URL+"/api/v1/agents/node1/heartbeat", strings.NewReader(`{"agent":"agent-node1","flowsSeen":10,"flowsSent":9,"flowsDropped":1}`))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	e.do(req)
	code, body := e.get("/api/v1/agents")
	agents := body["agents"].([]any)
	if code != 200 || len(agents) != 1 || agents[0].(map[string]any)["health"].(map[string]any)["flowsDropped"].(float64) != 1 {
		t.Fatalf("agents: %d %v", code, body)
	}
}
