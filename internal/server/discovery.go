package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/discovery"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/policy"
)

func init() { addRoutes((*Server).discoveryRoutes) }

func (s *Server) discoveryRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/api/v1/scopes/{name}/discover", Perm: auth.PolicyWrite, Scope: httpapi.Named("name"), Handler: s.startDiscovery},
		{Method: "GET", Pattern: "/api/v1/discovery/{id}", Perm: auth.PolicyRead, Scope: httpapi.Filtered, Handler: s.getDiscovery},
	}
}

// DiscoverRequest is the body of POST /api/v1/scopes/{name}/discover.
type DiscoverRequest struct {
	// The window: Since (a duration back from now) or From and To.
	Since string    `json:"since,omitempty"`
	From  time.Time `json:"from,omitempty"`
	To    time.Time `json:"to,omitempty"`
	// Exclude is a flow filter; matching flows are ignored.
	Exclude string `json:"exclude,omitempty"`
	// ExternalPrefix widens external IPv4 addresses (default 32).
	ExternalPrefix int `json:"externalPrefix,omitempty"`
	// AsVersion stores the result as a new draft version of the scope.
	AsVersion bool `json:"asVersion,omitempty"`
}

// DiscoveryJob is a discovery run: GET /api/v1/discovery/{id}.
type DiscoveryJob struct {
	ID      string            `json:"id"`
	Scope   string            `json:"scope"`
	State   string            `json:"state"` // running, done, failed
	Percent int               `json:"percent"`
	Error   string            `json:"error,omitempty"`
	Result  *discovery.Result `json:"result,omitempty"`
	// YAML is the result in the policy-as-code format.
	YAML string `json:"yaml,omitempty"`
	// Version is the draft made with asVersion.
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// DefaultDiscoveryTimeout is Config.DiscoveryTimeout's default: ten
// times what 10 M flows take on the server's path at load 30
// (docs/BENCHMARKS.md "Policy discovery").
const DefaultDiscoveryTimeout = 20 * time.Minute

// maxDiscoveryJobs bounds the jobs kept; the oldest finished go first.
const maxDiscoveryJobs = 32

type discoveryJobs struct {
	mu   sync.Mutex
	jobs map[string]*DiscoveryJob
}

func (j *discoveryJobs) put(job *DiscoveryJob) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.jobs == nil {
		j.jobs = map[string]*DiscoveryJob{}
	}
	if len(j.jobs) >= maxDiscoveryJobs {
		var done []*DiscoveryJob
		for _, x := range j.jobs {
			if x.State != "running" {
				done = append(done, x)
			}
		}
		if len(done) == 0 {
			return errors.New("too many discovery jobs running; wait for one to finish")
		}
		sort.Slice(done, func(a, b int) bool { return done[a].Started.Before(done[b].Started) })
		delete(j.jobs, done[0].ID)
	}
	j.jobs[job.ID] = job
	return nil
}

func (j *discoveryJobs) update(id string, f func(*DiscoveryJob)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if job := j.jobs[id]; job != nil {
		f(job)
	}
}

func (j *discoveryJobs) get(id string) (DiscoveryJob, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job := j.jobs[id]
	if job == nil {
		return DiscoveryJob{}, false
	}
	return *job, true
}

func (s *Server) startDiscovery(w http.ResponseWriter, r *http.Request) {
	scope := r.PathValue("name")
	var req DiscoverRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if _, ok := s.policy.repo.Scope(scope); !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("scope %q not found", scope))
		return
	}
	if req.AsVersion {
		// Storing the result as a version is an edit of the scope.
		if err := s.mayEdit(r, auth.PolicyEdit, scope); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
	}
	to := req.To
	if to.IsZero() {
		to = time.Now().UTC()
	}
	from := req.From
	switch {
	case req.Since != "" && !req.From.IsZero():
		writeError(w, http.StatusBadRequest, errors.New("give since or from/to, not both"))
		return
	case req.Since != "":
		d, err := time.ParseDuration(req.Since)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("since: %q is not a positive duration (e.g. 15m, 24h)", req.Since))
			return
		}
		from = to.Add(-d)
	case from.IsZero():
		from = to.Add(-time.Hour)
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339)))
		return
	}
	pins, err := s.discoveryPins(scope)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	opts := discovery.Options{Scope: scope, ExternalPrefix: req.ExternalPrefix, Pins: pins}
	if req.Exclude != "" {
		f, err := filter.Parse(req.Exclude, flow.Schema)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("exclude: %w", err))
			return
		}
		opts.Exclude = f
	}
	if req.ExternalPrefix < 0 || req.ExternalPrefix > 32 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("externalPrefix: %d is not a prefix length 1-32", req.ExternalPrefix))
		return
	}
	var idb [8]byte
	rand.Read(idb[:]) //nolint:errcheck // crypto/rand does not fail
	job := &DiscoveryJob{ID: hex.EncodeToString(idb[:]), Scope: scope, State: "running", Started: time.Now().UTC()}
	if err := s.discoveries.put(job); err != nil {
		writeError(w, http.StatusTooManyRequests, err)
		return
	}
	caller := who(r)
	started := *job // the job runs and changes under the jobs' lock from now on
	go s.runDiscovery(job.ID, opts, from, to, req.AsVersion, caller)
	writeJSON(w, http.StatusAccepted, started)
}

func (s *Server) runDiscovery(id string, opts discovery.Options, from, to time.Time, asVersion bool, caller string) {
	timeout := s.cfg.DiscoveryTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	fail := func(err error) {
		s.discoveries.update(id, func(j *DiscoveryJob) {
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("stopped after %s (the server's --discovery-timeout) with %d%% of the window read: discover a shorter window (since, from/to) or raise --discovery-timeout", timeout, j.Percent)
			}
			j.State, j.Error, j.Ended = "failed", err.Error(), time.Now().UTC()
		})
	}
	// overdue is the deadline, looked at between the steps that do not
	// look at it themselves.
	overdue := func() bool {
		if ctx.Err() != nil {
			fail(ctx.Err())
			return true
		}
		return false
	}
	set, err := s.policy.repo.Set(policy.Selection{Default: "latest"})
	if err != nil {
		fail(err)
		return
	}
	set.Services = s.policy.services()
	d, err := discovery.NewParallel(discovery.Input{Resolver: s.Inventory, Set: set}, opts, runtime.GOMAXPROCS(0))
	if err != nil {
		fail(err)
		return
	}
	defer d.Close()
	// The window is read in slices, as historical analysis reads it;
	// progress is the share of the window read.
	if _, err := readSlices(ctx, s.policy.flows, from, to, d.Add, func(at time.Time) {
		pct := int(95 * at.Sub(from) / to.Sub(from))
		s.discoveries.update(id, func(j *DiscoveryJob) { j.Percent = pct })
	}); err != nil {
		fail(fmt.Errorf("reading flows: %w", err))
		return
	}
	if overdue() {
		return
	}
	res := d.Result(from, to)
	if newest, err := s.policy.repo.Version(opts.Scope, ""); err == nil {
		res.DiffAgainst(newest)
	}
	if overdue() {
		return // a version is stored only by a job within its deadline
	}
	var made string
	if asVersion {
		sc, _ := s.policy.repo.Scope(opts.Scope)
		v := res.Version()
		v.Name = policy.VersionName(sc.LastVersion + 1)
		if _, err := s.policy.repo.Apply([]*policy.Document{{Kind: policy.KindPolicyVersion, Version: v}},
			policy.ApplyOptions{Who: caller}); err != nil {
			fail(fmt.Errorf("storing the version: %w", err))
			return
		}
		made = v.Name
	}
	var buf bytes.Buffer
	if err := res.WriteYAML(&buf); err != nil {
		fail(err)
		return
	}
	s.discoveries.update(id, func(j *DiscoveryJob) {
		j.State, j.Percent, j.Result, j.YAML, j.Version, j.Ended = "done", 100, res, buf.String(), made, time.Now().UTC()
	})
}

func (s *Server) getDiscovery(w http.ResponseWriter, r *http.Request) {
	job, ok := s.discoveries.get(r.PathValue("id"))
	if !ok || !s.visibilityOf(r).Scope(job.Scope) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no discovery job %q (jobs are kept in memory, the last %d)", r.PathValue("id"), maxDiscoveryJobs))
		return
	}
	writeJSON(w, http.StatusOK, job)
}
