package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestDiscoveryDeadline: a discovery job that runs past the server's
// --discovery-timeout ends as failed with an error saying so (how long,
// how much of the window was read, what to do), stores no version even
// when asked to, and frees its place; a negative timeout is refused at
// start.
func TestDiscoveryDeadline(t *testing.T) {
	if _, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", DiscoveryTimeout: -time.Second}); err == nil || !strings.Contains(err.Error(), "--discovery-timeout") {
		t.Fatalf("a negative discovery timeout: %v", err)
	}
	// A year read in 10-minute slices (52,560 store searches) cannot end
	// within a millisecond.
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", DiscoveryTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if code, body := rbacCall(t, s, "", "POST", "/api/v1/policy/apply", applyBody("kind: Scope\nname: slow\nfilter: namespace = \"slow\"\n")); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	code, body := rbacCall(t, s, "", "POST", "/api/v1/scopes/slow/discover", `{"since":"8760h","asVersion":true}`)
	if code != 202 {
		t.Fatalf("discover: %d %s", code, body)
	}
	var job DiscoveryJob
	if err := json.Unmarshal([]byte(body), &job); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the job to end", func() bool {
		rbacGet(t, s, "", "/api/v1/discovery/"+job.ID, &job)
		return job.State != "running"
	})
	if job.State != "failed" || !strings.Contains(job.Error, "stopped after 1ms") || !strings.Contains(job.Error, "--discovery-timeout") {
		t.Fatalf("job after its deadline: state %q, error %q", job.State, job.Error)
	}
	if job.Percent >= 95 || job.Result != nil || job.Version != "" || job.Ended.IsZero() {
		t.Errorf("a stopped job: percent %d, result %v, version %q, ended %v", job.Percent, job.Result != nil, job.Version, job.Ended)
	}
	if sc, _ := s.policy.repo.Scope("slow"); sc.LastVersion != 0 {
		t.Errorf("a job stopped by its deadline stored version %d", sc.LastVersion)
	}
}
