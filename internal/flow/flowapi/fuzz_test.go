package flowapi_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

func fuzzHandler(f *testing.F) http.Handler {
	st, err := store.Open(f.TempDir(), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	svc, err := flow.NewService(st, nil, flow.Options{MaxBatchBytes: 64 << 10, MaxBatchDecoded: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := httpapi.Mount(mux, flowapi.Routes(svc), nil); err != nil {
		f.Fatal(err)
	}
	return mux
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// checkAnswer: every answer is a known status with a JSON body, errors in
// the one error shape.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, ok ...int) {
	t.Helper()
	for _, c := range ok {
		if rec.Code == c {
			if c >= 400 {
				var e api.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
					t.Fatalf("%d with body %q", rec.Code, rec.Body.String())
				}
			}
			return
		}
	}
	t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
}

// FuzzIngest: any body, plain or gzip'd, as an agent's flow batch gets a
// 200 (a valid batch), 400 or 413, never a panic or a 500.
func FuzzIngest(f *testing.F) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	good, _ := json.Marshal(flow.Batch{Agent: "a", Node: "n1", Observations: []flow.Observation{{Seq: 1, Mode: flow.DetailedMode,
		Point: flow.ObservationPoint{Node: "n1", Interface: "veth1", Kind: "pod"},
		Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.0.0.1", SrcPort: 1, DstIP: "10.0.0.2", DstPort: 80}, Start: now, End: now, FwdPackets: 1, Conns: 1}}})
	f.Add(good, false)
	f.Add(good, true)
	f.Add([]byte(`{"agent":"a","node":"n2"}`), false)
	f.Add([]byte(`{"agent":"a","node":"n1","observations":[{"seq":1}]}`), true)
	f.Add([]byte(`{"agent": 3}`), false)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, false)
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		if gz {
			body = gzipped(body)
		}
		req := httptest.NewRequest("POST", "/api/v1/agents/n1/flows", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 200, 400, 413)
	})
}

// FuzzAgentJSON: heartbeats and configuration bodies.
func FuzzAgentJSON(f *testing.F) {
	f.Add("heartbeat", []byte(`{"agent":"a","flowsSeen":1}`))
	f.Add("config", []byte(`{"mode":"detailed"}`))
	f.Add("config", []byte(`{"mode":"x"}`))
	f.Add("config", []byte(`{"mode":"detailed","extra":1}`))
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, which string, body []byte) {
		method, path := "PUT", "/api/v1/agents/n1/config"
		if which == "heartbeat" {
			method, path = "POST", "/api/v1/agents/n1/heartbeat"
		}
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 200, 400, 413)
	})
}

// FuzzFlowQuery: the query parameters of searches and top lists.
func FuzzFlowQuery(f *testing.F) {
	f.Add("dst.port = 80", "5m", "", "10", "dst.port", "3")
	f.Add("((((", "NaN", "-1", "-1", "bytes", "100000000")
	f.Add("src.ip in (10.0.0.0/8)", "2026-12-01T00:00:00Z", "1e300", "100000000", "pair", "0")
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, filter, from, to, limit, by, n string) {
		q := url.Values{"filter": {filter}, "from": {from}, "to": {to}, "limit": {limit}}
		for _, path := range []string{"/api/v1/flows?" + q.Encode(), "/api/v1/flows/top?" + url.Values{"filter": {filter}, "from": {from}, "by": {by}, "n": {n}}.Encode()} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			checkAnswer(t, rec, 200, 400)
		}
	})
}
