package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/compile"
	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/store"
	"github.com/palisade-dev/palisade/pkg/api"
)

// bucketEnforcement holds each scope's enforcement mode.
const bucketEnforcement = "enforcement"

// enforcement keeps, per node, the bundle compiled from the scopes in
// enforce mode and the inventory now, recompiles on every change, and
// hands bundles to the agents' long polls.
type enforcement struct {
	kv   store.KV
	inv  *inventory.Inventory
	repo *policy.Repo

	mu       sync.Mutex
	modes    map[string]ruleset.ScopeMode
	bundles  map[string]*ruleset.Bundle
	changed  chan struct{} // closed when bundles change
	status   map[string]ruleset.AgentStatus
	compiled time.Time
	err      string
	rules    int
	members  int
	lastKey  string

	kick chan struct{}
}

func newEnforcement(kv store.KV, inv *inventory.Inventory, repo *policy.Repo) (*enforcement, error) {
	e := &enforcement{kv: kv, inv: inv, repo: repo, modes: map[string]ruleset.ScopeMode{}, bundles: map[string]*ruleset.Bundle{},
		changed: make(chan struct{}), status: map[string]ruleset.AgentStatus{}, kick: make(chan struct{}, 1)}
	err := kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketEnforcement, "", func(_ string, v []byte) error {
			var m ruleset.ScopeMode
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			e.modes[m.Scope] = m
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("enforcement modes: %w", err)
	}
	inv.Subscribe(func(*inventory.Workload) { e.trigger() })
	return e, nil
}

func (e *enforcement) trigger() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run recompiles after inventory or mode changes (batched over 50 ms), and
// every second if the policy versions in force changed.
func (e *enforcement) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	e.recompile(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			time.Sleep(50 * time.Millisecond)
			select {
			case <-e.kick:
			default:
			}
			e.recompile(true)
		case <-tick.C:
			e.recompile(false)
		}
	}
}

// recompile compiles the bundles; without force only when the versions
// in force changed since the last compilation.
func (e *enforcement) recompile(force bool) {
	set, err := e.repo.Set(policy.Selection{Default: "enforced"})
	e.mu.Lock()
	modes := make(map[string]ruleset.ScopeMode, len(e.modes))
	for k, v := range e.modes {
		modes[k] = v
	}
	e.mu.Unlock()
	if err != nil {
		e.fail(err)
		return
	}
	key := versionsKey(set, modes)
	e.mu.Lock()
	same := key == e.lastKey
	e.mu.Unlock()
	if same && !force {
		return
	}
	enforced := map[string]bool{}
	failOpen := false
	for name, m := range modes {
		if m.Mode != ruleset.Enforce {
			continue
		}
		if set.Versions[name] == nil {
			continue // the scope or its version is gone: nothing to program
		}
		enforced[name] = true
		failOpen = failOpen || m.FailOpen
	}
	ws := e.inv.Search(nil, inventory.SearchOptions{})
	set.Services = map[string]*inventory.Workload{}
	for _, w := range ws {
		if w.Kind == inventory.KindService {
			set.Services[w.Namespace+"/"+w.Name] = w
		}
	}
	out, err := compile.Compile(compile.Input{Set: set, Enforced: enforced, Workloads: ws, FailOpen: failOpen})
	if err != nil {
		e.fail(err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastKey, e.err, e.compiled = key, "", time.Now()
	e.rules = out.Stats.PodRules + out.Stats.NodeRules
	e.members = out.Stats.PodMembers + out.Stats.NodeMembers
	changed := len(out.Bundles) != len(e.bundles)
	for n, b := range out.Bundles {
		if old := e.bundles[n]; old == nil || old.Hash != b.Hash {
			changed = true
		}
	}
	if changed {
		e.bundles = out.Bundles
		close(e.changed)
		e.changed = make(chan struct{})
	}
}

// versionsKey fingerprints the versions in force and the modes.
func versionsKey(set policy.Set, modes map[string]ruleset.ScopeMode) string {
	var parts []string
	for name, v := range set.Versions {
		parts = append(parts, fmt.Sprintf("%s@%s/%d/%s", name, v.Name, len(v.Policies), v.Updated.Format(time.RFC3339Nano)))
	}
	for name, m := range modes {
		parts = append(parts, fmt.Sprintf("%s=%s/%s/%t", name, m.Mode, m.Version, m.FailOpen))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (e *enforcement) fail(err error) {
	slog.Error("enforcement: compilation failed; agents keep the rules they have", "err", err)
	e.mu.Lock()
	e.err = err.Error()
	e.mu.Unlock()
}

func init() { addRoutes((*Server).enforceRoutes) }

func (s *Server) enforceRoutes() []Route {
	e := s.enforce
	return []Route{
		{Method: "GET", Pattern: "/api/v1/enforcement", Perm: auth.EnforceRead, Scope: httpapi.Filtered, Handler: func(w http.ResponseWriter, r *http.Request) {
			e.get(w, s.visibilityOf(r))
		}},
		{Method: "POST", Pattern: "/api/v1/enforcement/scopes/{scope}", Perm: auth.EnforceWrite, Scope: httpapi.Named("scope"), Handler: e.setMode},
		// Agents, each for its own node.
		{Method: "GET", Pattern: "/api/v1/agents/{node}/enforcement", Perm: auth.AgentReport, Handler: e.poll},
		{Method: "POST", Pattern: "/api/v1/agents/{node}/enforcement/status", Perm: auth.AgentReport, Handler: e.report},
	}
}

// get answers GET /api/v1/enforcement: for a caller restricted to a scope,
// the modes of the scopes it may see (the nodes' state and the rule counts
// span every scope and are left out).
func (e *enforcement) get(w http.ResponseWriter, vis *visibility) {
	e.mu.Lock()
	out := ruleset.Enforcement{Scopes: []ruleset.ScopeMode{}, Agents: []ruleset.AgentView{}, Compiled: e.compiled, Error: e.err,
		Rules: e.rules, Members: e.members}
	for _, m := range e.modes {
		out.Scopes = append(out.Scopes, m)
	}
	nodes := map[string]bool{}
	for n := range e.bundles {
		nodes[n] = true
	}
	for n := range e.status {
		nodes[n] = true
	}
	for n := range nodes {
		v := ruleset.AgentView{AgentStatus: e.status[n]}
		v.Node = n
		if b := e.bundles[n]; b != nil {
			v.Wanted = b.Hash
		}
		v.InSync = v.Wanted != "" && v.Wanted == v.Hash
		out.Agents = append(out.Agents, v)
	}
	e.mu.Unlock()
	if !vis.All() {
		scopes := []ruleset.ScopeMode{}
		for _, m := range out.Scopes {
			if vis.Scope(m.Scope) {
				scopes = append(scopes, m)
			}
		}
		out.Scopes, out.Agents, out.Rules, out.Members, out.Error = scopes, []ruleset.AgentView{}, 0, 0, ""
	}
	sort.Slice(out.Scopes, func(i, j int) bool { return out.Scopes[i].Scope < out.Scopes[j].Scope })
	sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].Node < out.Agents[j].Node })
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// setMode answers POST /api/v1/enforcement/scopes/{scope}: enforce a
// version (default: the newest analyzed one) or go back to analyze.
func (e *enforcement) setMode(w http.ResponseWriter, r *http.Request) {
	scope := r.PathValue("scope")
	var req ruleset.ModeRequest
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if _, ok := e.repo.Scope(scope); !ok {
		httpapi.WriteError(w, api.NotFound("scope %q does not exist", scope))
		return
	}
	m := ruleset.ScopeMode{Scope: scope, Mode: req.Mode, FailOpen: req.FailOpen, Updated: time.Now(), UpdatedBy: who(r)}
	switch req.Mode {
	case ruleset.Analyze:
	case ruleset.Enforce:
		v, err := e.versionToEnforce(scope, req.Version)
		if err != nil {
			code := http.StatusUnprocessableEntity
			if errors.Is(err, policy.ErrNotFound) {
				code = http.StatusNotFound
			}
			httpapi.WriteError(w, api.Errorf(code, "%v", err))
			return
		}
		if err := e.repo.SetEnforced(scope, v, who(r)); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		m.Version = v
	default:
		httpapi.WriteError(w, api.BadRequest("mode", "mode %q: want %q or %q", req.Mode, ruleset.Analyze, ruleset.Enforce))
		return
	}
	buf, _ := json.Marshal(m)
	if err := e.kv.Update(func(tx store.Tx) error { return tx.Put(bucketEnforcement, scope, buf) }); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	e.mu.Lock()
	e.modes[scope] = m
	e.mu.Unlock()
	e.recompile(true)
	httpapi.WriteJSON(w, http.StatusOK, m)
}

// versionToEnforce is name, or the scope's newest analyzed (or enforced)
// version.
func (e *enforcement) versionToEnforce(scope, name string) (string, error) {
	if name != "" {
		v, err := e.repo.Version(scope, name)
		if err != nil {
			return "", fmt.Errorf("scope %s version %s: %w", scope, name, err)
		}
		return v.Name, nil
	}
	vs := e.repo.Versions(scope)
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].State == policy.Analyzed || vs[i].State == policy.Enforced {
			return vs[i].Name, nil
		}
	}
	return "", fmt.Errorf("scope %s has no analyzed version: analyze one first (palisade policy analyze --scope %s) or name one with --version", scope, scope)
}

// poll answers an agent's long poll: the node's bundle as soon as its hash
// differs from ?hash=, else 304 after ?wait= (default 25 s, at most 60 s).
func (e *enforcement) poll(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	have := r.URL.Query().Get("hash")
	wait := 25 * time.Second
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			httpapi.WriteError(w, api.BadRequest("wait", "wait %q: want a duration such as 25s", s))
			return
		}
		wait = min(d, 60*time.Second)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		e.mu.Lock()
		b, ch, compiled := e.bundles[node], e.changed, !e.compiled.IsZero()
		e.mu.Unlock()
		if b == nil && compiled && e.nothingEnforced() {
			// No scope is enforced: an empty bundle tells the agent to
			// remove whatever it programmed.
			b = &ruleset.Bundle{Node: node, Pods: []ruleset.Pod{}}
			b.Seal()
		}
		if b != nil && b.Hash != have {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(b)
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (e *enforcement) nothingEnforced() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.modes {
		if m.Mode == ruleset.Enforce {
			return false
		}
	}
	return true
}

// report takes an agent's status.
func (e *enforcement) report(w http.ResponseWriter, r *http.Request) {
	var st ruleset.AgentStatus
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<20))
	if err := dec.Decode(&st); err != nil {
		httpapi.WriteError(w, api.BadRequest("", "status: %v", err))
		return
	}
	st.Node = r.PathValue("node")
	st.Reported = time.Now()
	e.mu.Lock()
	e.status[st.Node] = st
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
