package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// TestMetrics: /metrics speaks the Prometheus format to a metrics-reader
// (flows ingested, refused by reason, agents, workloads, API latency) and
// to nobody else but the admin.
func TestMetrics(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	admin := s.Client("")
	reader, err := admin.CreateToken(ctx, "prom", "metrics-reader")
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := admin.CreateToken(ctx, "v", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	// One refused batch (no token), one search.
	req, _ := http.NewRequest("POST", s.URL()+"/api/v1/agents/n1/flows", bytes.NewReader([]byte("{}")))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated batch: %v %v", resp, err)
	}
	if _, err := admin.SearchFlows(ctx, client.FlowQuery{From: "5m"}); err != nil {
		t.Fatal(err)
	}
	var text []byte
	if err := s.Client(reader.Secret).Do(ctx, client.Request{Method: "GET", Path: "/metrics"}, &text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`palisade_flow_batches_refused_total{reason="unauthenticated"} 1`,
		"palisade_flow_observations_total 0",
		"palisade_flow_searches_total 1",
		"palisade_agents 0",
		"palisade_workloads 0",
		`palisade_api_request_duration_seconds_count{code="200",route="GET /api/v1/flows"} 1`,
		`palisade_api_request_duration_seconds_count{code="401",route="POST /api/v1/agents/{node}/flows"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := s.Client(viewer.Secret).Do(ctx, client.Request{Method: "GET", Path: "/metrics"}, nil); !api.IsStatus(err, 403) {
		t.Fatalf("a viewer scrapes /metrics: %v", err)
	}
	if resp, err := http.Get(s.URL() + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("/metrics without a token: %v %v", resp, err)
	}
}
