package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// Buckets of the control-plane store the repository writes.
const (
	bucketScopes   = "policy.scopes"
	bucketVersions = "policy.versions" // "SCOPE/%08d"
	bucketAudit    = "policy.audit"
	// BucketFilters is the bucket of named inventory filters, shared with
	// the inventory's saved filters (internal/server).
	BucketFilters = "filters"
)

// ScopeRecord is a stored scope with its bookkeeping.
type ScopeRecord struct {
	Scope
	// Enforced names the version enforcement uses ("": none yet).
	Enforced string `json:"enforced,omitempty"`
	// LastVersion is the highest version number ever given out, so a
	// deleted draft's name is never reused.
	LastVersion int       `json:"lastVersion"`
	Created     time.Time `json:"created"`
	CreatedBy   string    `json:"createdBy"`
	Updated     time.Time `json:"updated"`
	UpdatedBy   string    `json:"updatedBy"`
}

// AuditEntry records one change: who, when, what.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Op     string    `json:"op"`
	Object string    `json:"object"`
	Diff   []string  `json:"diff,omitempty"`
}

// Repo is the store of scopes, versions and named filters. All writes go
// through it; it keeps everything in memory and persists to a store.KV.
// It is safe for concurrent use.
type Repo struct {
	kv  store.KV
	mu  sync.Mutex
	now func() time.Time

	scopes   map[string]*ScopeRecord
	versions map[string][]*Version // by scope, ordered by number
	filters  map[string]NamedFilter
	auditSeq uint64

	subsMu sync.Mutex
	subs   []func()
}

// OnChange registers fn to be called (outside the repository's lock) after
// every change that was written: applies, deletes, a version analyzed or
// enforced. Compliance monitoring re-reads the enforced versions on it.
func (r *Repo) OnChange(fn func()) {
	r.subsMu.Lock()
	r.subs = append(r.subs, fn)
	r.subsMu.Unlock()
}

func (r *Repo) changed() {
	r.subsMu.Lock()
	subs := append([]func(){}, r.subs...)
	r.subsMu.Unlock()
	for _, fn := range subs {
		fn()
	}
}

// OpenRepo loads the repository from kv.
func OpenRepo(kv store.KV) (*Repo, error) {
	r := &Repo{kv: kv, now: time.Now, scopes: map[string]*ScopeRecord{}, versions: map[string][]*Version{}, filters: map[string]NamedFilter{}}
	err := kv.View(func(tx store.Tx) error {
		if err := tx.ForEach(bucketScopes, "", func(_ string, v []byte) error {
			var s ScopeRecord
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			r.scopes[s.Name] = &s
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEach(bucketVersions, "", func(_ string, v []byte) error {
			var ver Version
			if err := json.Unmarshal(v, &ver); err != nil {
				return err
			}
			r.versions[ver.Scope] = append(r.versions[ver.Scope], &ver)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEach(BucketFilters, "", func(_ string, v []byte) error {
			var f NamedFilter
			if json.Unmarshal(v, &f) == nil {
				r.filters[f.Name] = f
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.ForEach(bucketAudit, "", func(k string, _ []byte) error {
			fmt.Sscanf(k, "%d", &r.auditSeq)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("policy: load: %w", err)
	}
	for _, vs := range r.versions {
		sort.Slice(vs, func(i, j int) bool { return vs[i].Number < vs[j].Number })
	}
	return r, nil
}

// Scopes returns every scope, parents before children, then by name.
func (r *Repo) Scopes() []ScopeRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedScopes(r.scopes)
}

func sortedScopes(m map[string]*ScopeRecord) []ScopeRecord {
	depth := func(s *ScopeRecord) int {
		d := 0
		for p := s.Parent; p != "" && p != RootScope && d <= len(m); d++ {
			if m[p] == nil {
				break
			}
			p = m[p].Parent
		}
		return d
	}
	out := make([]ScopeRecord, 0, len(m))
	for _, s := range m {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := depth(m[out[i].Name]), depth(m[out[j].Name])
		if di != dj {
			return di < dj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Scope returns one scope.
func (r *Repo) Scope(name string) (ScopeRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.scopes[name]
	if !ok {
		return ScopeRecord{}, false
	}
	return *s, true
}

// Versions returns a scope's versions, oldest first (copies).
func (r *Repo) Versions(scope string) []*Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Version, len(r.versions[scope]))
	for i, v := range r.versions[scope] {
		out[i] = v.Clone()
	}
	return out
}

// ErrNotFound is returned for a scope or version that does not exist.
var ErrNotFound = errors.New("not found")

// Version returns one version of a scope ("" or "latest": the newest).
func (r *Repo) Version(scope, name string) (*Version, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.version(scope, name)
	if err != nil {
		return nil, err
	}
	return v.Clone(), nil
}

func (r *Repo) version(scope, name string) (*Version, error) {
	if _, ok := r.scopes[scope]; !ok {
		return nil, fmt.Errorf("scope %q: %w", scope, ErrNotFound)
	}
	vs := r.versions[scope]
	if name == "" || name == "latest" {
		if len(vs) == 0 {
			return nil, fmt.Errorf("scope %q has no version yet: %w", scope, ErrNotFound)
		}
		return vs[len(vs)-1], nil
	}
	if name == "enforced" {
		name = r.scopes[scope].Enforced
	}
	n, err := ParseVersionName(name)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if v.Number == n {
			return v, nil
		}
	}
	return nil, fmt.Errorf("version %s of scope %q: %w", name, scope, ErrNotFound)
}

// Filters returns the named inventory filters.
func (r *Repo) Filters() []NamedFilter {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]NamedFilter, 0, len(r.filters))
	for _, f := range r.filters {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Selection picks, per scope, the version an evaluation uses.
type Selection struct {
	// Versions overrides per scope ("v2", "latest", "enforced").
	Versions map[string]string
	// Default is what scopes without an override use: "latest" (the
	// default) or "enforced". A scope without such a version has no
	// intents (its catch-all decides).
	Default string
}

// Set assembles an evaluator Set.
func (r *Repo) Set(sel Selection) (Set, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := Set{Versions: map[string]*Version{}}
	for _, s := range sortedScopes(r.scopes) {
		set.Scopes = append(set.Scopes, s.Scope)
		want, ok := sel.Versions[s.Name]
		if !ok {
			want = sel.Default
		}
		if want == "enforced" && s.Enforced == "" {
			continue
		}
		v, err := r.version(s.Name, want)
		if errors.Is(err, ErrNotFound) && !ok {
			continue // no version yet
		}
		if err != nil {
			return Set{}, err
		}
		set.Versions[s.Name] = v.Clone()
	}
	for name := range sel.Versions {
		if _, ok := r.scopes[name]; !ok {
			return Set{}, fmt.Errorf("scope %q: %w", name, ErrNotFound)
		}
	}
	return set, nil
}

// MarkAnalyzed freezes a draft version because it was analyzed.
func (r *Repo) MarkAnalyzed(scope, version string) error {
	return r.setState(scope, version, Analyzed, "")
}

// ErrChangedDuringAnalysis is MarkAnalyzedAs's refusal: the draft was
// edited while it was being analyzed.
var ErrChangedDuringAnalysis = errors.New("the version changed while it was analyzed; analyze it again")

// MarkAnalyzedAs freezes a draft version after an analysis of it
// succeeded, provided it still holds what was analyzed (analyzed, as it
// was read before the analysis): a draft edited meanwhile stays a draft,
// with ErrChangedDuringAnalysis.
func (r *Repo) MarkAnalyzedAs(analyzed *Version) error {
	changed, err := r.setStateIf(analyzed.Scope, analyzed.Name, Analyzed, "", func(v *Version) error {
		if !v.Frozen() && len(DiffVersions(analyzed, v)) > 0 {
			return fmt.Errorf("scope %s version %s: %w", v.Scope, v.Name, ErrChangedDuringAnalysis)
		}
		return nil
	})
	if changed && err == nil {
		r.changed()
	}
	return err
}

// SetEnforced makes version the scope's enforced version (the previous
// one stays immutable as analyzed).
func (r *Repo) SetEnforced(scope, version, who string) error {
	return r.setState(scope, version, Enforced, who)
}

func (r *Repo) setState(scope, version string, st VersionState, who string) error {
	changed, err := r.setStateLocked(scope, version, st, who)
	if changed && err == nil {
		r.changed()
	}
	return err
}

func (r *Repo) setStateLocked(scope, version string, st VersionState, who string) (bool, error) {
	return r.setStateIf(scope, version, st, who, nil)
}

// setStateIf is setStateLocked with a check of the version under the lock
// (nil: none).
func (r *Repo) setStateIf(scope, version string, st VersionState, who string, check func(*Version) error) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.version(scope, version)
	if err != nil {
		return false, err
	}
	if check != nil {
		if err := check(v); err != nil {
			return false, err
		}
	}
	if st == Analyzed && v.Frozen() {
		return false, nil
	}
	sc := *r.scopes[scope]
	var changed []*Version
	if st == Enforced {
		if sc.Enforced == v.Name {
			return false, nil
		}
		if old, err := r.version(scope, sc.Enforced); err == nil && sc.Enforced != "" {
			o := old.Clone()
			o.State = Analyzed
			changed = append(changed, o)
		}
		sc.Enforced = v.Name
	}
	nv := v.Clone()
	nv.State = st
	changed = append(changed, nv)
	err = r.kv.Update(func(tx store.Tx) error {
		for _, c := range changed {
			if err := putJSON(tx, bucketVersions, versionKey(c), c); err != nil {
				return err
			}
		}
		if st == Enforced {
			if err := putJSON(tx, bucketScopes, scope, &sc); err != nil {
				return err
			}
			return r.audit(tx, who, "enforce", scope+"@"+v.Name, nil)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, c := range changed {
		r.replaceVersion(c)
	}
	r.scopes[scope] = &sc
	return true, nil
}

func (r *Repo) replaceVersion(v *Version) {
	vs := r.versions[v.Scope]
	for i := range vs {
		if vs[i].Number == v.Number {
			vs[i] = v
			return
		}
	}
	vs = append(vs, v)
	sort.Slice(vs, func(i, j int) bool { return vs[i].Number < vs[j].Number })
	r.versions[v.Scope] = vs
}

// Audit returns the newest n audit entries, newest first.
func (r *Repo) Audit(n int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := r.kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketAudit, "", func(_ string, v []byte) error {
			var e AuditEntry
			if json.Unmarshal(v, &e) == nil {
				out = append(out, e)
			}
			return nil
		})
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, err
}

func (r *Repo) audit(tx store.Tx, who, op, object string, diff []string) error {
	r.auditSeq++
	return putJSON(tx, bucketAudit, fmt.Sprintf("%020d", r.auditSeq), AuditEntry{Time: r.now().UTC(), Who: who, Op: op, Object: object, Diff: diff})
}

func versionKey(v *Version) string { return fmt.Sprintf("%s/%08d", v.Scope, v.Number) }

func putJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

// DiffVersions lists what changes from a to b: intents removed ("-"),
// added ("+") and changed ("~"), and a changed catch-all.
func DiffVersions(a, b *Version) []string {
	var out []string
	if a.CatchAll != b.CatchAll {
		out = append(out, fmt.Sprintf("~ catchAll %s → %s", orUnset(a.CatchAll), orUnset(b.CatchAll)))
	}
	old := map[string]Policy{}
	for _, p := range a.Policies {
		old[p.Key()] = p
	}
	seen := map[string]bool{}
	for _, p := range b.Policies {
		k := p.Key()
		seen[k] = true
		o, had := old[k]
		switch {
		case !had:
			out = append(out, "+ "+PolicyString(p))
		case !samePolicy(o, p):
			out = append(out, "~ "+PolicyString(o)+"  →  "+PolicyString(p))
		}
	}
	for _, p := range a.Policies {
		if !seen[p.Key()] {
			out = append(out, "- "+PolicyString(p))
		}
	}
	if len(out) == 0 && !sameOrder(a.Policies, b.Policies) {
		out = append(out, "~ order of intents")
	}
	return out
}

func orUnset(a Action) string {
	if a == NoAction {
		return "(scope's)"
	}
	return a.String()
}

func sameOrder(a, b []Policy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key() != b[i].Key() {
			return false
		}
	}
	return true
}

func samePolicy(a, b Policy) bool {
	return a.Name == b.Name && a.Consumer == b.Consumer && a.Provider == b.Provider && a.Action == b.Action &&
		strings.Join(a.Ports, ",") == strings.Join(b.Ports, ",") && a.Class == b.Class &&
		a.EffectivePriority() == b.EffectivePriority() && a.Direction == b.Direction
}

// PolicyString is a one-line rendering of an intent:
// "[name] CONSUMER → PROVIDER tcp/80 ALLOW default prio 100".
func PolicyString(p Policy) string {
	var b strings.Builder
	if p.Name != "" {
		b.WriteString("[" + p.Name + "] ")
	}
	b.WriteString(p.Consumer + " → " + p.Provider)
	if len(p.Ports) > 0 {
		b.WriteString(" " + strings.Join(p.Ports, ","))
	} else {
		b.WriteString(" any")
	}
	fmt.Fprintf(&b, " %s %s prio %d", p.Action, p.Class, p.EffectivePriority())
	if p.Direction != Both {
		b.WriteString(" " + p.Direction.String() + " only")
	}
	return b.String()
}
