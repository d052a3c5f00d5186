package server

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
)

// TestAnalysisSlicesCountEachFlowOnce stores flows over 35 minutes (four
// slices of a historical analysis), some long enough to overlap several
// slices and one starting before the range, and checks that the analysis
// counts every flow of the range exactly once.
func TestAnalysisSlicesCountEachFlowOnce(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	from := time.Now().Add(-time.Hour).Truncate(time.Minute)
	to := from.Add(35 * time.Minute)
	var flows []flow.Flow
	n := uint64(0)
	add := func(start time.Time, d time.Duration) {
		n++
		flows = append(flows, flow.Flow{ID: flow.MakeID(start, n), Mode: flow.ConversationMode, Proto: "tcp", Start: start, End: start.Add(d),
			Src: flow.Endpoint{IP: "10.1.0.1"}, Dst: flow.Endpoint{IP: "10.1.0.2", Port: uint16(1000 + n)}, Replied: true})
	}
	add(from.Add(-2*time.Minute), 5*time.Minute) // started before the range, overlaps it
	for m := 0; m < 35; m++ {
		add(from.Add(time.Duration(m)*time.Minute+time.Second), 10*time.Second)
	}
	add(from.Add(9*time.Minute), 25*time.Minute) // spans three slices
	add(from.Add(10*time.Minute), time.Second)   // exactly on a slice boundary
	add(to.Add(time.Minute), time.Second)        // after the range: not counted
	if err := s.flowStore.Append(flows, nil); err != nil {
		t.Fatal(err)
	}
	resp := do(t, s, "", "GET", "/api/v1/analysis?"+url.Values{"from": {from.Format(time.RFC3339Nano)}, "to": {to.Format(time.RFC3339Nano)}}.Encode(), "")
	defer resp.Body.Close()
	var rep analyze.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("analysis: %d %v", resp.StatusCode, err)
	}
	if want := len(flows) - 1; rep.Flows != want || rep.Counts.Unscoped != want {
		t.Fatalf("analysis counted %d flows (%+v), want each of the %d flows of the range once", rep.Flows, rep.Counts, want)
	}
}

// TestPolicyREST creates, reads and deletes every policy object over JSON.
func TestPolicyREST(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/v1/scopes", `{"name":"shop","filter":"namespace = shop","catchAll":"DENY"}`, 200},
		{"POST", "/api/v1/scopes", `{"name":"bad","filter":"namespace ="}`, 422},
		{"POST", "/api/v1/scopes/shop/policies", `{"consumer":"label.app = a","provider":"label.app = b","action":"ALLOW","ports":["tcp/80"]}`, 200},
		{"POST", "/api/v1/scopes/shop/versions", `{"version":"v1","policies":[{"consumer":"any","provider":"label.app = b","action":"ALLOW","ports":["tcp/80"]},{"name":"x","consumer":"any","provider":"any","action":"DENY"}]}`, 200},
		{"GET", "/api/v1/scopes/shop/versions/v1", "", 200},
		{"DELETE", "/api/v1/scopes/shop/policies/x", "", 200},
		{"DELETE", "/api/v1/scopes/shop/policies/7", "", 404},
		{"GET", "/api/v1/scopes/shop/versions/v1/diff?to=v1", "", 200},
		{"POST", "/api/v1/scopes/shop/versions", `{"version":"v2","policies":[]}`, 200},
		{"DELETE", "/api/v1/scopes/shop/versions/v2", "", 200},
		{"GET", "/api/v1/scopes/shop/versions/v2", "", 404},
		{"DELETE", "/api/v1/scopes/shop", "", 200},
		{"GET", "/api/v1/scopes/shop", "", 404},
	} {
		if got := status(t, s, "", c.method, c.path, c.body); got != c.want {
			t.Errorf("%s %s %s: %d, want %d", c.method, c.path, c.body, got, c.want)
		}
	}
}
