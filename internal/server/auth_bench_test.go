package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	flowstore "github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/store"
)

// authBench serves the flow routes over loopback HTTP, with the server's
// guard (authentication, authorization, audit) or without any (the
// "before" of issue 11), over one flow store.
type authBench struct {
	svc   *flow.Service
	token string
	open  *httptest.Server // no guard
	auth  *httptest.Server // s.guard
}

func newAuthBench(b *testing.B) *authBench {
	dir := b.TempDir()
	kv, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kv.Close() })
	st, err := flowstore.Open(dir+"/flows", flowstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	svc, err := flow.NewService(st, nil, flow.Options{Window: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{cfg: Config{DataDir: dir}, kv: kv, authz: &auth.Authorizer{}}
	if s.tokens, err = auth.OpenTokens(kv); err != nil {
		b.Fatal(err)
	}
	if s.audit, err = audit.Open(kv, 0); err != nil {
		b.Fatal(err)
	}
	_, tok, err := s.tokens.Create("bench", auth.Admin, "bench")
	if err != nil {
		b.Fatal(err)
	}
	mount := func(g httpapi.Guard) *httptest.Server {
		mux := http.NewServeMux()
		if err := httpapi.Mount(mux, flowapi.Routes(svc), g); err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(hostCheck(nil, recoverer(mux)))
		b.Cleanup(hs.Close)
		return hs
	}
	return &authBench{svc: svc, token: tok, open: mount(nil), auth: mount(s.guard)}
}

func benchBatch(agent string, seq uint64, n int) []byte {
	now := time.Now()
	bt := flow.Batch{Agent: agent, Node: "n1"}
	for i := range n {
		bt.Observations = append(bt.Observations, flow.Observation{Seq: seq + uint64(i), Mode: flow.DetailedMode,
			Point: flow.ObservationPoint{Node: "n1", Interface: "veth1", Kind: "pod"},
			Tuple: flow.Tuple{Proto: "tcp", SrcIP: fmt.Sprintf("10.244.%d.%d", i>>8&255, i&255), SrcPort: uint16(30000 + i%30000), DstIP: "10.244.9.9", DstPort: 8080},
			Start: now.Add(-time.Second), End: now, FwdPackets: 3, FwdBytes: 300, Conns: 1, NewConns: 1})
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	json.NewEncoder(zw).Encode(bt)
	zw.Close()
	return buf.Bytes()
}

func (ab *authBench) do(b *testing.B, srv *httptest.Server, method, path string, body []byte) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+ab.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

// BenchmarkAuthIngest: agent batches of 1,000 observations, 2 senders,
// through the flow routes without and with authentication (an API token
// checked against the registry: SHA-256 and a constant-time compare).
func BenchmarkAuthIngest(b *testing.B) {
	ab := newAuthBench(b)
	var agents atomic.Int64
	for _, c := range []struct {
		name string
		srv  *httptest.Server
	}{{"open", ab.open}, {"auth", ab.auth}} {
		b.Run(c.name, func(b *testing.B) {
			const per = 1000
			b.SetParallelism(1) // GOMAXPROCS senders
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				agent := fmt.Sprintf("a%d", agents.Add(1))
				var seq uint64
				for pb.Next() {
					body := benchBatch(agent, seq, per)
					seq += per
					ab.do(b, c.srv, "POST", "/api/v1/agents/n1/flows", body)
				}
			})
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "obs/s")
		})
	}
}

// BenchmarkAuthSearch: flow searches (the last hour, limit 100) without
// and with authentication; reports p50 and p99 latency.
func BenchmarkAuthSearch(b *testing.B) {
	ab := newAuthBench(b)
	for i := range 20 {
		if err := ab.svc.Ingest(context.Background(), mustBatch(b, fmt.Sprintf("s%d", i), 1000)); err != nil {
			b.Fatal(err)
		}
	}
	if err := ab.svc.Flush(true); err != nil {
		b.Fatal(err)
	}
	q := "/api/v1/flows?" + url.Values{"filter": {"dst.port = 8080 and src.ip in 10.244.0.0/16"}, "from": {"1h"}, "limit": {"100"}}.Encode()
	for _, c := range []struct {
		name string
		srv  *httptest.Server
	}{{"open", ab.open}, {"auth", ab.auth}} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				ab.do(b, c.srv, "GET", q, nil)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func mustBatch(b testing.TB, agent string, n int) flow.Batch {
	zr, err := gzip.NewReader(bytes.NewReader(benchBatch(agent, 0, n)))
	if err != nil {
		b.Fatal(err)
	}
	var bt flow.Batch
	if err := json.NewDecoder(zr).Decode(&bt); err != nil {
		b.Fatal(err)
	}
	return bt
}

// BenchmarkGuard: the cost of authentication and authorization alone, per
// request, in process: an API token (SHA-256 + registry look-up + role
// check), the shared agent token, and no guard.
func BenchmarkGuard(b *testing.B) {
	dir := b.TempDir()
	kv, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	s := &Server{cfg: Config{DataDir: dir, AgentToken: "0123456789abcdef0123456789abcdef"}, kv: kv, authz: &auth.Authorizer{}}
	s.tokens, _ = auth.OpenTokens(kv)
	s.audit, _ = audit.Open(kv, 0)
	_, tok, _ := s.tokens.Create("bench", auth.Viewer, "bench")
	rt := Route{Method: "GET", Pattern: "/api/v1/flows", Perm: auth.FlowsRead, Handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }}
	agentRt := Route{Method: "POST", Pattern: "/api/v1/agents/{node}/flows", Perm: auth.AgentReport, Handler: rt.Handler}
	for _, c := range []struct {
		name  string
		h     http.Handler
		token string
	}{
		{"none", rt.Handler, ""},
		{"api-token", s.guard(rt, rt.Handler), tok},
		{"agent-token", s.guard(agentRt, agentRt.Handler), s.cfg.AgentToken},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v1/flows", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			req.SetPathValue("node", "n1")
			for b.Loop() {
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, req)
				if rec.Code != 204 {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
