package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/compliance"
	"github.com/palisade-dev/palisade/internal/store"
)

// policyAPI adapts internal/policy (scopes, versions, analysis, compliance)
// to HTTP. Domain logic and persistence stay in internal/policy.
type policyAPI struct {
	repo  *policy.Repo
	mon   *compliance.Monitor
	inv   *inventory.Inventory
	flows flow.Store
	// srv gives the handlers each caller's visibility and edit checks
	// (per-scope RBAC, visibility.go).
	srv *Server
}

// MaxAnalysisFlows caps the flows one slice (analysisSlice) of a
// historical analysis reads.
const MaxAnalysisFlows = 2_000_000

func newPolicyAPI(kv store.KV, inv *inventory.Inventory, flows flow.Store) (*policyAPI, error) {
	repo, err := policy.OpenRepo(kv)
	if err != nil {
		return nil, err
	}
	// Live analysis resolves each end through a cache of the current
	// holders that any inventory change drops.
	live := &analyze.LiveResolver{R: inv}
	inv.Subscribe(func(*inventory.Workload) { live.Invalidate() })
	mon, err := compliance.Open(kv, live, slog.Default())
	if err != nil {
		return nil, err
	}
	p := &policyAPI{repo: repo, mon: mon, inv: inv, flows: flows}
	if err := p.refresh(); err != nil {
		slog.Error("policy: the enforced versions do not compile; compliance monitoring is off until they do", "err", err)
	}
	// Every change of scopes and versions, whichever API made it (apply,
	// enforcement, NetworkPolicy import), reaches compliance monitoring.
	repo.OnChange(func() {
		if err := p.refresh(); err != nil {
			slog.Error("policy: refreshing compliance monitoring", "err", err)
		}
	})
	return p, nil
}

// onFlows is the flow service's hook: live compliance analysis, with the
// ends the pipeline resolved.
func (p *policyAPI) onFlows(flows []flow.Flow, ends []flow.Ends) {
	if p != nil {
		p.mon.Observe(flows, ends)
	}
}

// refresh hands the enforced versions to the compliance monitor.
func (p *policyAPI) refresh() error {
	set, err := p.repo.Set(policy.Selection{Default: "enforced"})
	if err != nil {
		return err
	}
	set.Services = p.services()
	return p.mon.SetPolicy(set)
}

// services maps "namespace/name" to the live services (service consumers).
func (p *policyAPI) services() map[string]*inventory.Workload {
	out := map[string]*inventory.Workload{}
	f, _ := filter.Parse(`kind = service`, inventory.Schema)
	for _, w := range p.inv.Search(f, inventory.SearchOptions{}) {
		out[w.Namespace+"/"+w.Name] = w
	}
	return out
}

func (p *policyAPI) serviceExists(ns, name string) bool {
	_, ok := p.services()[ns+"/"+name]
	return ok
}

func init() { addRoutes((*Server).policyRoutes) }

func (s *Server) policyRoutes() []Route {
	p := s.policy
	const read, operate, edit = auth.PolicyRead, auth.PolicyWrite, auth.PolicyEdit
	named, filtered := httpapi.Named("name"), httpapi.Filtered
	return []Route{
		{Method: "GET", Pattern: "/api/v1/scopes", Perm: read, Scope: filtered, Handler: p.listScopes},
		{Method: "POST", Pattern: "/api/v1/scopes", Perm: edit, Scope: filtered, Handler: p.putScope},
		{Method: "GET", Pattern: "/api/v1/scopes/{name}", Perm: read, Scope: named, Handler: p.getScope},
		{Method: "DELETE", Pattern: "/api/v1/scopes/{name}", Perm: edit, Scope: httpapi.Child("name"), Handler: p.deleteScope},
		{Method: "GET", Pattern: "/api/v1/scopes/{name}/policies", Perm: read, Scope: named, Handler: p.listPolicies},
		{Method: "POST", Pattern: "/api/v1/scopes/{name}/policies", Perm: edit, Scope: named, Handler: p.putPolicy},
		{Method: "DELETE", Pattern: "/api/v1/scopes/{name}/policies/{ref}", Perm: edit, Scope: named, Handler: p.deletePolicy},
		{Method: "GET", Pattern: "/api/v1/scopes/{name}/versions", Perm: read, Scope: named, Handler: p.listVersions},
		{Method: "POST", Pattern: "/api/v1/scopes/{name}/versions", Perm: edit, Scope: named, Handler: p.putVersion},
		{Method: "DELETE", Pattern: "/api/v1/scopes/{name}/versions/{version}", Perm: edit, Scope: named, Handler: p.deleteVersion},
		{Method: "GET", Pattern: "/api/v1/scopes/{name}/versions/{version}", Perm: read, Scope: named, Handler: p.getVersion},
		{Method: "GET", Pattern: "/api/v1/scopes/{name}/versions/{version}/diff", Perm: read, Scope: named, Handler: p.diffVersions},
		{Method: "POST", Pattern: "/api/v1/scopes/{name}/versions/{version}/enforce", Perm: operate, Scope: named, Handler: p.enforce},
		{Method: "POST", Pattern: "/api/v1/policy/apply", Perm: edit, Scope: filtered, Handler: p.apply, MaxBody: policy.MaxDocumentBytes * 2},
		{Method: "POST", Pattern: "/api/v1/policy/delete", Perm: edit, Scope: filtered, Handler: p.delete, MaxBody: policy.MaxDocumentBytes * 2},
		{Method: "GET", Pattern: "/api/v1/policy/audit", Perm: read, Scope: filtered, Handler: p.audit},
		{Method: "GET", Pattern: "/api/v1/analysis", Perm: read, Scope: httpapi.Named("scope"), Handler: p.analysis},
		{Method: "GET", Pattern: "/api/v1/analysis/flows", Perm: read, Scope: httpapi.Named("scope"), Handler: p.analysisFlows},
		{Method: "GET", Pattern: "/api/v1/analysis/live", Perm: read, Scope: filtered, Handler: p.live},
		{Method: "GET", Pattern: "/api/v1/compliance/alerts", Perm: read, Scope: filtered, Handler: p.alerts},
		{Method: "POST", Pattern: "/api/v1/compliance/alerts/{id}/ack", Perm: operate, Scope: filtered, Handler: p.ack},
	}
}

// who is the caller's identity for the policy audit trail.
func who(r *http.Request) string { return auth.Who(r.Context()) }

// ScopeView is a scope with its versions' summary.
type ScopeView struct {
	policy.ScopeRecord
	Versions []VersionSummary `json:"versions"`
}

// VersionSummary describes a version without its intents.
type VersionSummary struct {
	Name      string              `json:"version"`
	State     policy.VersionState `json:"state"`
	Policies  int                 `json:"policies"`
	Created   time.Time           `json:"created"`
	CreatedBy string              `json:"createdBy"`
	Updated   time.Time           `json:"updated"`
	UpdatedBy string              `json:"updatedBy"`
}

func (p *policyAPI) view(s policy.ScopeRecord) ScopeView {
	v := ScopeView{ScopeRecord: s, Versions: []VersionSummary{}}
	for _, ver := range p.repo.Versions(s.Name) {
		v.Versions = append(v.Versions, VersionSummary{Name: ver.Name, State: ver.State, Policies: len(ver.Policies),
			Created: ver.Created, CreatedBy: ver.CreatedBy, Updated: ver.Updated, UpdatedBy: ver.UpdatedBy})
	}
	return v
}

func (p *policyAPI) listScopes(w http.ResponseWriter, r *http.Request) {
	out := []ScopeView{}
	vis := p.srv.visibilityOf(r)
	for _, s := range p.repo.Scopes() {
		if vis.Scope(s.Name) {
			out = append(out, p.view(s))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *policyAPI) getScope(w http.ResponseWriter, r *http.Request) {
	s, ok := p.repo.Scope(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no scope %q", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, p.view(s))
}

func (p *policyAPI) version(w http.ResponseWriter, r *http.Request, name string) (*policy.Version, bool) {
	v, err := p.repo.Version(r.PathValue("name"), name)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, policy.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, err)
		return nil, false
	}
	return v, true
}

func (p *policyAPI) listPolicies(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.repo.Scope(r.PathValue("name")); !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no scope %q", r.PathValue("name")))
		return
	}
	v, err := p.repo.Version(r.PathValue("name"), r.URL.Query().Get("version"))
	if errors.Is(err, policy.ErrNotFound) && r.URL.Query().Get("version") == "" {
		writeJSON(w, http.StatusOK, []policy.Policy{})
		return
	}
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusOK, v.Policies)
}

func (p *policyAPI) listVersions(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.repo.Scope(r.PathValue("name")); !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no scope %q", r.PathValue("name")))
		return
	}
	out := p.repo.Versions(r.PathValue("name"))
	if out == nil {
		out = []*policy.Version{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *policyAPI) getVersion(w http.ResponseWriter, r *http.Request) {
	if v, ok := p.version(w, r, r.PathValue("version")); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

func (p *policyAPI) diffVersions(w http.ResponseWriter, r *http.Request) {
	a, ok := p.version(w, r, r.PathValue("version"))
	if !ok {
		return
	}
	b, ok := p.version(w, r, r.URL.Query().Get("to"))
	if !ok {
		return
	}
	d := policy.DiffVersions(a, b)
	if d == nil {
		d = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": a.Name, "to": b.Name, "diff": d})
}

func (p *policyAPI) enforce(w http.ResponseWriter, r *http.Request) {
	v, ok := p.version(w, r, r.PathValue("version"))
	if !ok {
		return
	}
	if err := p.repo.SetEnforced(v.Scope, v.Name, who(r)); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if err := p.refresh(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("version marked enforced, but the enforced versions do not compile: %w", err))
		return
	}
	s, _ := p.repo.Scope(v.Scope)
	writeJSON(w, http.StatusOK, p.view(s))
}

// ApplyRequest is the body of /api/v1/policy/apply and /delete: YAML files
// (names are for error messages).
type ApplyRequest struct {
	Files  []ApplyFile `json:"files"`
	DryRun bool        `json:"dryRun,omitempty"`
}

// ApplyFile is one YAML input.
type ApplyFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// applyError is the answer to documents that do not apply.
type applyError struct {
	Error  string        `json:"error"`
	Errors policy.Errors `json:"errors"`
}

func (p *policyAPI) apply(w http.ResponseWriter, r *http.Request)  { p.run(w, r, false) }
func (p *policyAPI) delete(w http.ResponseWriter, r *http.Request) { p.run(w, r, true) }

func (p *policyAPI) run(w http.ResponseWriter, r *http.Request, del bool) {
	var req ApplyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, policy.MaxDocumentBytes*2))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	var docs []*policy.Document
	var errs policy.Errors
	for _, f := range req.Files {
		d, err := policy.ParseDocuments(f.Name, strings.NewReader(f.Content))
		docs = append(docs, d...)
		var es policy.Errors
		if errors.As(err, &es) {
			errs = append(errs, es...)
		} else if err != nil {
			errs = append(errs, &policy.Error{Pos: policy.Pos{File: f.Name}, Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, applyError{Error: errs.Error(), Errors: errs})
		return
	}
	p.execute(w, r, docs, req.DryRun, del)
}

// execute applies or deletes parsed documents and answers with the result
// or, for documents that do not apply, 422 and every error.
func (p *policyAPI) execute(w http.ResponseWriter, r *http.Request, docs []*policy.Document, dryRun, del bool) {
	if err := p.mayChange(r, docs); err != nil {
		writeError(w, http.StatusForbidden, err)
		return
	}
	opts := policy.ApplyOptions{DryRun: dryRun, Who: who(r), ServiceExists: p.serviceExists}
	var res *policy.Result
	var err error
	if del {
		res, err = p.repo.Delete(docs, opts)
	} else {
		res, err = p.repo.Apply(docs, opts)
	}
	var es policy.Errors
	switch {
	case errors.As(err, &es):
		writeJSON(w, http.StatusUnprocessableEntity, applyError{Error: es.Error(), Errors: es})
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, res) // compliance refreshes through repo.OnChange
}

// mayChange checks that the caller may change what docs name: intents and
// versions of a scope need policy.own on it; a scope's definition needs it
// on its parent, now and after the change (so a scoped owner creates,
// edits and deletes scopes below its own, never its own or another's);
// saved filters belong to no scope.
func (p *policyAPI) mayChange(r *http.Request, docs []*policy.Document) error {
	var scopes []string
	for _, d := range docs {
		switch {
		case d.Scope != nil:
			if cur, ok := p.repo.Scope(d.Scope.Name); ok {
				scopes = append(scopes, cur.Parent)
			}
			scopes = append(scopes, d.Scope.Parent)
		case d.Policy != nil:
			scopes = append(scopes, d.Policy.Scope)
		case d.Version != nil:
			scopes = append(scopes, d.Version.Scope)
		default:
			scopes = append(scopes, "") // a saved filter
		}
	}
	return p.srv.mayEdit(r, auth.PolicyEdit, scopes...)
}

// putScope creates or updates a scope from JSON (the fields of a Scope document).
func (p *policyAPI) putScope(w http.ResponseWriter, r *http.Request) {
	var s policy.Scope
	if err := readJSON(r, &s); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p.applyObjects(w, r, []any{policy.ScopeDoc(s)})
}

// putPolicy adds or changes an intent of the scope's newest draft.
func (p *policyAPI) putPolicy(w http.ResponseWriter, r *http.Request) {
	var pol policy.Policy
	if err := readJSON(r, &pol); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	pol.Scope = r.PathValue("name")
	p.applyObjects(w, r, []any{policy.PolicyDoc(pol, r.URL.Query().Get("version"))})
}

// deletePolicy removes an intent, named by its name or its index in the
// scope's newest version, from the newest draft (a new version when the
// newest is frozen).
func (p *policyAPI) deletePolicy(w http.ResponseWriter, r *http.Request) {
	v, ok := p.version(w, r, "")
	if !ok {
		return
	}
	ref := r.PathValue("ref")
	for i, pol := range v.Policies {
		if pol.Name == ref || (pol.Name == "" && strconv.Itoa(i) == ref) {
			p.runObjects(w, r, []any{policy.PolicyDoc(pol, "")}, true)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("scope %s version %s has no intent named or numbered %q", v.Scope, v.Name, ref))
}

// putVersion creates or replaces a version from JSON (the fields of a
// PolicyVersion document; "version" empty: the newest draft).
func (p *policyAPI) putVersion(w http.ResponseWriter, r *http.Request) {
	var v policy.Version
	if err := readJSON(r, &v); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	v.Scope = r.PathValue("name")
	for i := range v.Policies {
		v.Policies[i].Scope = v.Scope
	}
	p.runObjects(w, r, []any{policy.VersionDoc(&v)}, false)
}

// deleteVersion deletes a draft version.
func (p *policyAPI) deleteVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := p.version(w, r, r.PathValue("version"))
	if !ok {
		return
	}
	p.runObjects(w, r, []any{policy.VersionDoc(v)}, true)
}

func (p *policyAPI) deleteScope(w http.ResponseWriter, r *http.Request) {
	s, ok := p.repo.Scope(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no scope %q", r.PathValue("name")))
		return
	}
	p.runObjects(w, r, []any{policy.ScopeDoc(s.Scope)}, true)
}

func (p *policyAPI) applyObjects(w http.ResponseWriter, r *http.Request, docs []any) {
	p.runObjects(w, r, docs, false)
}

// runObjects applies JSON objects through the same path as YAML documents,
// so both obey the same validation.
func (p *policyAPI) runObjects(w http.ResponseWriter, r *http.Request, objs []any, del bool) {
	var b strings.Builder
	if err := policy.Marshal(&b, objs); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	docs, err := policy.ParseDocuments("request", strings.NewReader(b.String()))
	var es policy.Errors
	if errors.As(err, &es) {
		writeJSON(w, http.StatusUnprocessableEntity, applyError{Error: es.Error(), Errors: es})
		return
	}
	p.execute(w, r, docs, r.URL.Query().Get("dry_run") == "true", del)
}

func (p *policyAPI) audit(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	out, err := p.repo.Audit(n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if vis := p.srv.visibilityOf(r); !vis.All() {
		kept := []policy.AuditEntry{}
		for _, e := range out {
			if vis.Scope(auditScope(e.Object)) {
				kept = append(kept, e)
			}
		}
		out = kept
	}
	if out == nil {
		out = []policy.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, out)
}

// auditScope is the scope a policy audit entry's object belongs to
// ("Scope/S", "Policy/S/..." and "PolicyVersion/S@v" name it after the
// kind; "S@v" for enforcement).
func auditScope(object string) string {
	kind, rest, ok := strings.Cut(object, "/")
	if !ok {
		rest = kind
	} else if kind == policy.KindInventoryFilter {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "/")
	rest, _, _ = strings.Cut(rest, "@")
	return rest
}

// analysisQuery is what /api/v1/analysis and /analysis/flows read.
type analysisQuery struct {
	scope, version string
	from, to       time.Time
}

func parseAnalysisQuery(r *http.Request) (analysisQuery, error) {
	q := r.URL.Query()
	aq := analysisQuery{scope: q.Get("scope"), version: q.Get("version"), to: time.Now().UTC()}
	var err error
	if v := q.Get("to"); v != "" {
		if aq.to, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return aq, fmt.Errorf("to: %q is not an RFC 3339 time", v)
		}
	}
	switch {
	case q.Get("from") != "":
		if aq.from, err = time.Parse(time.RFC3339Nano, q.Get("from")); err != nil {
			return aq, fmt.Errorf("from: %q is not an RFC 3339 time", q.Get("from"))
		}
	case q.Get("since") != "":
		d, err := time.ParseDuration(q.Get("since"))
		if err != nil || d <= 0 {
			return aq, fmt.Errorf("since: %q is not a positive duration (e.g. 15m, 24h)", q.Get("since"))
		}
		aq.from = aq.to.Add(-d)
	default:
		aq.from = aq.to.Add(-time.Hour)
	}
	if !aq.from.Before(aq.to) {
		return aq, fmt.Errorf("from (%s) must be before to (%s)", aq.from.Format(time.RFC3339), aq.to.Format(time.RFC3339))
	}
	if aq.version != "" && aq.scope == "" {
		return aq, errors.New("version: give the scope it belongs to (scope=NAME)")
	}
	return aq, nil
}

// analyze runs a historical analysis, calling fn for every analyzed flow.
// The analyzed version of the scope becomes immutable once its flows were
// read.
func (p *policyAPI) analyze(ctx context.Context, aq analysisQuery, fn func(*analyze.FlowVerdict)) (map[string]string, bool, error) {
	sel := policy.Selection{Default: "latest"}
	if aq.scope != "" {
		if _, ok := p.repo.Scope(aq.scope); !ok {
			return nil, false, fmt.Errorf("scope %q: %w", aq.scope, policy.ErrNotFound)
		}
		v := aq.version
		if v == "" {
			v = "latest"
		}
		sel.Versions = map[string]string{aq.scope: v}
	}
	set, err := p.repo.Set(sel)
	if err != nil {
		return nil, false, err
	}
	set.Services = p.services()
	ev, err := policy.Compile(set)
	if err != nil {
		return nil, false, err
	}
	versions := map[string]string{}
	for s, v := range set.Versions {
		versions[s] = v.Name
	}
	an := analyze.New(ev, p.inv, aq.scope)
	truncated, err := readSlices(ctx, p.flows, aq.from, aq.to, func(f *flow.Flow) {
		if fv, ok := an.Analyze(f); ok {
			fn(&fv)
		}
	}, nil)
	if err != nil {
		return versions, truncated, err
	}
	// Only an analysis that read its flows freezes the version (and only
	// if it was not edited meanwhile).
	if v := set.Versions[aq.scope]; aq.scope != "" && v != nil {
		if err := p.repo.MarkAnalyzedAs(v); err != nil {
			return nil, false, err
		}
	}
	return versions, truncated, nil
}

// readSlices calls fn for every stored flow of [from, to], read in slices
// of analysisSlice so memory holds one slice of flows; a flow counts in the
// slice it starts in (the first slice also takes flows that started before
// the range and overlap it). done, if set, is told where the reading is
// after each slice. It reports whether a slice hit MaxAnalysisFlows. It
// stops with ctx's error once ctx is done (the client went away, the
// deadline passed), within a slice every sliceCheckEvery flows.
func readSlices(ctx context.Context, store flow.Store, from, to time.Time, fn func(*flow.Flow), done func(time.Time)) (truncated bool, err error) {
	for cf := from; cf.Before(to); cf = cf.Add(analysisSlice) {
		ct := cf.Add(analysisSlice)
		if ct.After(to) {
			ct = to
		}
		flows, err := store.Search(flow.Query{From: cf.UnixNano(), To: ct.UnixNano(), Limit: MaxAnalysisFlows, Context: ctx})
		if err != nil {
			return truncated, err
		}
		truncated = truncated || len(flows) >= MaxAnalysisFlows
		last := !ct.Before(to)
		for i := range flows {
			if i%sliceCheckEvery == 0 && ctx.Err() != nil {
				return truncated, ctx.Err()
			}
			f := &flows[i]
			if (f.Start.Before(cf) && !cf.Equal(from)) || (!f.Start.Before(ct) && !last) {
				continue // counted in another slice
			}
			fn(f)
		}
		if done != nil {
			done(ct)
		}
	}
	return truncated, nil
}

// analysisSlice is how much of a historical range is read at once.
const analysisSlice = 10 * time.Minute

// sliceCheckEvery is how many flows readSlices hands on between two looks
// at its context.
const sliceCheckEvery = 4096

// AnalysisTimeout bounds a historical analysis on the server's side
// (within the server's write timeout); the client going away stops it
// earlier.
const AnalysisTimeout = 100 * time.Second

func (p *policyAPI) analysis(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAnalysisQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	t := analyze.NewTally(aq.scope, nil, aq.from, aq.to, p.intentText)
	ctx, cancel := context.WithTimeout(r.Context(), AnalysisTimeout)
	defer cancel()
	versions, truncated, err := p.analyze(ctx, aq, t.Add)
	if err != nil {
		writeAnalysisError(w, err)
		return
	}
	rep := t.Report()
	rep.Versions, rep.Truncated = versions, truncated
	trimReport(rep, p.srv.visibilityOf(r), false)
	writeJSON(w, http.StatusOK, rep)
}

func writeAnalysisError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		httpapi.WriteError(w, httpapi.Stopped(err, AnalysisTimeout))
		return
	}
	code := http.StatusUnprocessableEntity
	switch {
	case errors.Is(err, policy.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, policy.ErrChangedDuringAnalysis):
		code = http.StatusConflict
	}
	writeError(w, code, err)
}

// intentText renders the intent a rule names (for reports).
func (p *policyAPI) intentText(ref policy.RuleRef) string {
	if ref.CatchAll() {
		return "catch-all"
	}
	v, err := p.repo.Version(ref.Scope, ref.Version)
	if err != nil || ref.Index >= len(v.Policies) {
		return ""
	}
	return policy.PolicyString(v.Policies[ref.Index])
}

// analysisFlows drills down to the flows of one cell: verdict, rule, scope
// and minute select it.
func (p *policyAPI) analysisFlows(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAnalysisQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	var cell analyze.Cell
	if v := q.Get("verdict"); v != "" {
		vd, err := policy.ParseVerdict(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("verdict: %w", err))
			return
		}
		cell.Verdict = &vd
	}
	cell.Rule, cell.Scope = q.Get("rule"), q.Get("in_scope")
	if v := q.Get("minute"); v != "" {
		if cell.Minute, err = time.Parse(time.RFC3339, v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("minute: %q is not an RFC 3339 time", v))
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %q is not a positive number", v))
			return
		}
	}
	out := []analyze.FlowVerdict{}
	vis := p.srv.visibilityOf(r)
	ctx, cancel := context.WithTimeout(r.Context(), AnalysisTimeout)
	defer cancel()
	_, _, err = p.analyze(ctx, aq, func(fv *analyze.FlowVerdict) {
		if len(out) < limit && cell.Holds(fv) {
			c := *fv
			hideSides(&c, vis)
			out = append(out, c)
		}
	})
	if err != nil {
		writeAnalysisError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *policyAPI) live(w http.ResponseWriter, r *http.Request) {
	rep := p.mon.Live()
	if rep == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("live analysis is not running (the enforced versions do not compile)"))
		return
	}
	c := *rep
	trimReport(&c, p.srv.visibilityOf(r), true)
	writeJSON(w, http.StatusOK, &c)
}

// trimReport leaves in an analysis report only the scopes, rules and
// versions the caller may see. A historical analysis already counts only
// flows touching the caller's scope; the live report covers every scope, so
// for a restricted caller (whole) its totals become the sums of the
// visible scopes' counts and its per-minute series is left out.
func trimReport(rep *analyze.Report, vis *visibility, whole bool) {
	if vis.All() {
		return
	}
	versions := map[string]string{}
	for sc, v := range rep.Versions {
		if vis.Scope(sc) {
			versions[sc] = v
		}
	}
	rep.Versions = versions
	rules := []analyze.RuleCounts{}
	for _, rc := range rep.ByRule {
		if vis.Ruled(rc.Rule) {
			rules = append(rules, rc)
		}
	}
	rep.ByRule = rules
	scopes := []analyze.ScopeCounts{}
	var sum analyze.Counts
	for _, sc := range rep.ByScope {
		if vis.Scope(sc.Scope) {
			scopes = append(scopes, sc)
			sum.Permitted += sc.Permitted
			sum.Escaped += sc.Escaped
			sum.Rejected += sc.Rejected
			sum.Misdropped += sc.Misdropped
		}
	}
	rep.ByScope = scopes
	if whole {
		rep.Counts = sum
		rep.Flows = sum.Permitted + sum.Escaped + sum.Rejected + sum.Misdropped
		rep.Translated = 0
		rep.ByMinute = []analyze.MinuteCounts{}
	}
}

// hideSides blanks, for a restricted caller, the rule and scope of a side
// decided in a scope it may not see: the action stays (the verdict depends
// on it), which intent of the other scope decided does not.
func hideSides(fv *analyze.FlowVerdict, vis *visibility) {
	if vis.All() {
		return
	}
	for _, sd := range []*policy.SideDecision{&fv.Decision.Egress, &fv.Decision.Ingress} {
		if !vis.Scope(sd.Scope) && sd.Scope != "" {
			sd.Scope, sd.Rule = "", policy.RuleRef{}
		}
	}
	if !vis.Ruled(fv.Rule) {
		fv.Rule = policy.RuleRef{}
	}
}

func (p *policyAPI) alerts(w http.ResponseWriter, r *http.Request) {
	vis := p.srv.visibilityOf(r)
	out := []compliance.Alert{}
	for _, a := range p.mon.Alerts(r.URL.Query().Get("all") == "true") {
		if vis.Scope(a.Scope) {
			out = append(out, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *policyAPI) ack(w http.ResponseWriter, r *http.Request) {
	vis := p.srv.visibilityOf(r)
	if !vis.All() {
		var scope string
		for _, a := range p.mon.Alerts(true) {
			if a.ID == r.PathValue("id") {
				scope = a.Scope
			}
		}
		if !vis.Scope(scope) {
			writeError(w, http.StatusNotFound, fmt.Errorf("no alert %q", r.PathValue("id")))
			return
		}
	}
	a, err := p.mon.Ack(r.PathValue("id"), who(r))
	if errors.Is(err, compliance.ErrNoAlert) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no alert %q", r.PathValue("id")))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// workloadScopes returns the scopes a workload belongs to now, from the
// top down to its deciding scope.
func (p *policyAPI) workloadScopes(w *inventory.Workload) []string {
	set, err := p.repo.Set(policy.Selection{Default: "latest"})
	if err != nil {
		return nil
	}
	set.Versions = nil
	ev, err := policy.Compile(set)
	if err != nil {
		return nil
	}
	out := ev.Scopes(policy.Peer{Workload: w})
	if out == nil {
		out = []string{}
	}
	return out
}
