package server

import (
	"context"
	"errors"
	"testing"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/policy"
)

// failingReads is a flow store whose searches fail (a disk error while
// reading a historical range).
type failingReads struct{ flow.Store }

func (failingReads) Search(flow.Query) ([]flow.Flow, error) {
	return nil, errors.New("segment 42: read: input/output error")
}

// An analysis freezes the draft it analyzed only once its flows were read:
// a failed read leaves the draft editable, a successful one freezes it.
func TestAnalysisFreezesOnlyAfterRead(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/scopes", `{"name":"shop","filter":"namespace = shop","catchAll":"DENY"}`},
		{"POST", "/api/v1/scopes/shop/policies", `{"consumer":"label.app = a","provider":"label.app = b","action":"ALLOW","ports":["tcp/80"]}`},
	} {
		if got := status(t, s, "", c.method, c.path, c.body); got != 200 {
			t.Fatalf("%s %s: %d", c.method, c.path, got)
		}
	}
	state := func() policy.VersionState {
		v, err := s.policy.repo.Version("shop", "v1")
		if err != nil {
			t.Fatal(err)
		}
		return v.State
	}
	real := s.policy.flows
	s.policy.flows = failingReads{real}
	if got := status(t, s, "", "GET", "/api/v1/analysis?scope=shop&version=v1&since=1h", ""); got < 400 {
		t.Fatalf("analysis over a failing store: %d, want an error", got)
	}
	if st := state(); st != policy.Draft {
		t.Fatalf("after a failed read v1 is %v, want still a draft", st)
	}
	s.policy.flows = real
	if got := status(t, s, "", "GET", "/api/v1/analysis?scope=shop&version=v1&since=1h", ""); got != 200 {
		t.Fatalf("analysis: %d", got)
	}
	if st := state(); st != policy.Analyzed {
		t.Fatalf("after a successful analysis v1 is %v, want analyzed", st)
	}
}
