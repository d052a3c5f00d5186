package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// ApplyOptions tune Apply and Delete.
type ApplyOptions struct {
	// DryRun validates and reports the changes without writing them.
	DryRun bool
	// Who is the caller's identity, recorded with every change ("local"
	// when empty).
	Who string
	// ServiceExists reports whether a service:NAMESPACE/NAME reference
	// names a known service (nil: every reference is accepted).
	ServiceExists func(namespace, name string) bool
}

// Change is one change Apply or Delete made (or would make).
type Change struct {
	Kind string   `json:"kind"`
	Name string   `json:"name"`
	Op   string   `json:"op"` // created, updated, deleted
	Diff []string `json:"diff,omitempty"`
}

// Result is what Apply or Delete did.
type Result struct {
	Changes []Change `json:"changes"`
	DryRun  bool     `json:"dryRun,omitempty"`
}

// state is a working copy of the repository that an apply edits.
type state struct {
	scopes   map[string]*ScopeRecord
	versions map[string][]*Version
	filters  map[string]NamedFilter
	// touched versions (by scope/number) and scopes, to persist.
	dirtyVersions map[string]*Version
	deadVersions  map[string]*Version
	dirtyScopes   map[string]bool
	deadScopes    map[string]bool
	dirtyFilters  map[string]bool
	// drafts made by this apply, by scope: later documents edit them.
	newDraft map[string]*Version
	changes  []Change
}

func (r *Repo) working() *state {
	st := &state{scopes: map[string]*ScopeRecord{}, versions: map[string][]*Version{}, filters: map[string]NamedFilter{},
		dirtyVersions: map[string]*Version{}, deadVersions: map[string]*Version{}, dirtyScopes: map[string]bool{},
		deadScopes: map[string]bool{}, dirtyFilters: map[string]bool{}, newDraft: map[string]*Version{}}
	for k, v := range r.scopes {
		c := *v
		st.scopes[k] = &c
	}
	for k, vs := range r.versions {
		st.versions[k] = append([]*Version(nil), vs...)
	}
	for k, v := range r.filters {
		st.filters[k] = v
	}
	return st
}

// Apply makes the repository hold what docs declare, all or nothing: on
// any error nothing is written and the error is Errors naming each
// document's file:line:column and field. Applying the same documents
// again changes nothing (and reports no change).
//
// Scopes and named filters are created or updated. A Policy with a
// version edits that version; without one it edits the scope's newest
// draft, and when the newest version is frozen (analyzed or enforced),
// or there is none, a new version copied from the newest is made (once
// per scope and apply). A PolicyVersion declares a version's whole
// content.
func (r *Repo) Apply(docs []*Document, opts ApplyOptions) (*Result, error) {
	return r.run(docs, opts, false)
}

// Delete removes what docs name: scopes (with their versions), named
// filters, draft versions, and intents (from the newest draft, making a
// new version when the newest is frozen). Everything or nothing.
func (r *Repo) Delete(docs []*Document, opts ApplyOptions) (*Result, error) {
	return r.run(docs, opts, true)
}

func (r *Repo) run(docs []*Document, opts ApplyOptions, del bool) (*Result, error) {
	res, err := r.runLocked(docs, opts, del)
	if err == nil && !res.DryRun && len(res.Changes) > 0 {
		r.changed()
	}
	return res, err
}

func (r *Repo) runLocked(docs []*Document, opts ApplyOptions, del bool) (*Result, error) {
	if opts.Who == "" {
		opts.Who = "local"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.working()
	var errs Errors
	// Filters and scopes first (parents before children regardless of
	// document order), then versions, then single intents.
	order := map[string]int{KindInventoryFilter: 0, KindScope: 1, KindPolicyVersion: 2, KindPolicy: 3}
	sorted := append([]*Document(nil), docs...)
	if del { // children and intents go before what holds them
		order = map[string]int{KindPolicy: 0, KindPolicyVersion: 1, KindScope: 2, KindInventoryFilter: 3}
	}
	sort.SliceStable(sorted, func(i, j int) bool { return order[sorted[i].Kind] < order[sorted[j].Kind] })
	if !del {
		sorted = parentsFirst(sorted)
	} else {
		sorted = childrenFirst(sorted, st)
	}
	for _, d := range sorted {
		var e *Error
		if del {
			e = r.deleteDoc(st, d, opts)
		} else {
			e = r.applyDoc(st, d, opts)
		}
		if e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		if e := r.check(st, docs, opts); e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			a, b := errs[i].Pos, errs[j].Pos
			if a.File != b.File {
				return a.File < b.File
			}
			return a.Line < b.Line
		})
		return nil, errs
	}
	res := &Result{Changes: st.changes, DryRun: opts.DryRun}
	if res.Changes == nil {
		res.Changes = []Change{}
	}
	if opts.DryRun || len(st.changes) == 0 {
		return res, nil
	}
	err := r.kv.Update(func(tx store.Tx) error {
		for name := range st.deadScopes {
			if err := tx.Delete(bucketScopes, name); err != nil {
				return err
			}
		}
		for name := range st.dirtyScopes {
			if err := putJSON(tx, bucketScopes, name, st.scopes[name]); err != nil {
				return err
			}
		}
		for k := range st.deadVersions {
			if err := tx.Delete(bucketVersions, k); err != nil {
				return err
			}
		}
		for k, v := range st.dirtyVersions {
			if err := putJSON(tx, bucketVersions, k, v); err != nil {
				return err
			}
		}
		for name := range st.dirtyFilters {
			f, ok := st.filters[name]
			if !ok {
				if err := tx.Delete(BucketFilters, name); err != nil {
					return err
				}
				continue
			}
			// The shape of the server's saved filters, so both list them.
			if err := putJSON(tx, BucketFilters, name, map[string]any{"name": f.Name, "filter": f.Filter,
				"description": f.Description, "created": r.now().UTC()}); err != nil {
				return err
			}
		}
		for _, c := range st.changes {
			if err := r.audit(tx, opts.Who, c.Op, c.Kind+"/"+c.Name, c.Diff); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: saving: %w", err)
	}
	r.scopes, r.versions, r.filters = st.scopes, st.versions, st.filters
	return res, nil
}

// parentsFirst orders Scope documents so a parent declared in the same
// apply comes before its children.
func parentsFirst(docs []*Document) []*Document {
	declared := map[string]*Document{}
	for _, d := range docs {
		if d.Kind == KindScope {
			declared[d.Scope.Name] = d
		}
	}
	var out []*Document
	done := map[*Document]bool{}
	var visit func(d *Document, depth int)
	visit = func(d *Document, depth int) {
		if done[d] || depth > len(docs) {
			return
		}
		if d.Kind == KindScope {
			if p := declared[d.Scope.Parent]; p != nil && p != d {
				visit(p, depth+1)
			}
		}
		if !done[d] {
			done[d] = true
			out = append(out, d)
		}
	}
	for _, d := range docs {
		visit(d, 0)
	}
	return out
}

// childrenFirst orders Scope documents so children are deleted before
// their parents.
func childrenFirst(docs []*Document, st *state) []*Document {
	depth := func(name string) int {
		n := 0
		for s := st.scopes[name]; s != nil && n <= len(st.scopes); n++ {
			s = st.scopes[s.Parent]
		}
		return n
	}
	sort.SliceStable(docs, func(i, j int) bool {
		if docs[i].Kind != KindScope || docs[j].Kind != KindScope {
			return false
		}
		return depth(docs[i].Scope.Name) > depth(docs[j].Scope.Name)
	})
	return docs
}

// change records a change; several documents changing one object make one
// change.
func (st *state) change(kind, name, op string, diff []string) {
	for i := range st.changes {
		if c := &st.changes[i]; c.Name == name && (c.Kind == kind || kind != KindScope && kind != KindInventoryFilter && c.Kind != KindScope && c.Kind != KindInventoryFilter) {
			c.Diff = append(c.Diff, diff...)
			return
		}
	}
	st.changes = append(st.changes, Change{Kind: kind, Name: name, Op: op, Diff: diff})
}

func (st *state) putVersion(v *Version) {
	vs := st.versions[v.Scope]
	replaced := false
	for i := range vs {
		if vs[i].Number == v.Number {
			vs[i], replaced = v, true
		}
	}
	if !replaced {
		vs = append(vs, v)
		sort.Slice(vs, func(i, j int) bool { return vs[i].Number < vs[j].Number })
	}
	st.versions[v.Scope] = vs
	st.dirtyVersions[versionKey(v)] = v
	delete(st.deadVersions, versionKey(v))
	if nd := st.newDraft[v.Scope]; nd != nil && nd.Number == v.Number {
		st.newDraft[v.Scope] = v // later documents edit this copy
	}
}

func (st *state) newest(scope string) *Version {
	vs := st.versions[scope]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}

func (r *Repo) applyDoc(st *state, d *Document, opts ApplyOptions) *Error {
	now := r.now().UTC()
	switch d.Kind {
	case KindInventoryFilter:
		f := *d.Filter
		old, had := st.filters[f.Name]
		if had && old.Filter == f.Filter && old.Description == f.Description {
			return nil
		}
		st.filters[f.Name] = f
		st.dirtyFilters[f.Name] = true
		if had {
			st.change(KindInventoryFilter, f.Name, "updated", []string{"~ filter " + old.Filter + " → " + f.Filter})
		} else {
			st.change(KindInventoryFilter, f.Name, "created", nil)
		}
	case KindScope:
		s := *d.Scope
		if s.Parent == RootScope {
			s.Parent = ""
		}
		if s.Parent != "" {
			if _, ok := st.scopes[s.Parent]; !ok {
				return d.errorf("parent", "scope %q does not exist (declare it, or omit parent for a child of the root)", s.Parent)
			}
			for p := s.Parent; p != ""; p = st.scopes[p].Parent {
				if p == s.Name {
					return d.errorf("parent", "%q would make the scope its own ancestor", s.Parent)
				}
				if st.scopes[p] == nil {
					break
				}
			}
		}
		old, had := st.scopes[s.Name]
		if had && old.Scope == s {
			return nil
		}
		rec := &ScopeRecord{Scope: s, Created: now, CreatedBy: opts.Who, Updated: now, UpdatedBy: opts.Who}
		if had {
			rec.Enforced, rec.LastVersion, rec.Created, rec.CreatedBy = old.Enforced, old.LastVersion, old.Created, old.CreatedBy
			var diff []string
			if old.Parent != s.Parent {
				diff = append(diff, fmt.Sprintf("~ parent %q → %q", old.Parent, s.Parent))
			}
			if old.Filter != s.Filter {
				diff = append(diff, fmt.Sprintf("~ filter %s → %s", old.Filter, s.Filter))
			}
			if old.CatchAll != s.CatchAll {
				diff = append(diff, fmt.Sprintf("~ catchAll %s → %s", orUnset(old.CatchAll), orUnset(s.CatchAll)))
			}
			if old.Description != s.Description {
				diff = append(diff, "~ description")
			}
			st.change(KindScope, s.Name, "updated", diff)
		} else {
			st.change(KindScope, s.Name, "created", nil)
		}
		st.scopes[s.Name] = rec
		st.dirtyScopes[s.Name] = true
		delete(st.deadScopes, s.Name)
	case KindPolicyVersion, KindPolicy:
		sc, ok := st.scopes[d.Version.Scope]
		if !ok {
			return d.errorf("scope", "scope %q does not exist", d.Version.Scope)
		}
		if e := r.checkRefs(st, d, opts); e != nil {
			return e
		}
		target, e := st.target(d, sc)
		if e != nil {
			return e
		}
		next := target.Clone()
		if d.Kind == KindPolicyVersion {
			next.Policies = append([]Policy(nil), d.Version.Policies...)
			next.CatchAll = d.Version.CatchAll
			next.Source = d.Version.Source
		} else {
			upsert(next, *d.Policy)
		}
		diff := DiffVersions(target, next)
		if len(diff) == 0 && !(target.Number > sc.LastVersion) {
			return nil
		}
		if target.Frozen() {
			if d.Version.Name != "" {
				return d.errorf("version", "version %s of scope %s is %s and immutable; apply without a version to make a new draft", target.Name, sc.Name, target.State)
			}
			next = st.draftFrom(sc, target, now, opts.Who)
			if d.Kind == KindPolicyVersion {
				next.Policies = append([]Policy(nil), d.Version.Policies...)
				next.CatchAll = d.Version.CatchAll
				next.Source = d.Version.Source
			} else {
				upsert(next, *d.Policy)
			}
		}
		next.Updated, next.UpdatedBy = now, opts.Who
		if next.Created.IsZero() {
			next.Created, next.CreatedBy = now, opts.Who
		}
		created := next.Number > sc.LastVersion
		if created {
			sc.LastVersion = next.Number
			st.dirtyScopes[sc.Name] = true
			st.newDraft[sc.Name] = next
		}
		st.putVersion(next)
		name := sc.Name + "@" + next.Name
		if created {
			st.change(d.Kind, name, "created", diff)
		} else {
			st.change(d.Kind, name, "updated", diff)
		}
	}
	return nil
}

// target returns the version a Policy or PolicyVersion document edits: the
// named one (a new one when it is the next number), or the newest (an
// empty v1 when there is none). A version this apply already made is
// edited in place.
func (st *state) target(d *Document, sc *ScopeRecord) (*Version, *Error) {
	if v := st.newDraft[sc.Name]; v != nil && (d.Version.Name == "" || d.Version.Name == v.Name) {
		return v, nil
	}
	if d.Version.Name != "" {
		n, _ := ParseVersionName(d.Version.Name)
		for _, v := range st.versions[sc.Name] {
			if v.Number == n {
				return v, nil
			}
		}
		if n != sc.LastVersion+1 {
			return nil, d.errorf("version", "scope %s has no version %s; the next new version is %s", sc.Name, d.Version.Name, VersionName(sc.LastVersion+1))
		}
		return &Version{Scope: sc.Name, Name: d.Version.Name, Number: n, State: Draft, Policies: []Policy{}}, nil
	}
	if v := st.newest(sc.Name); v != nil {
		return v, nil
	}
	n := sc.LastVersion + 1
	return &Version{Scope: sc.Name, Name: VersionName(n), Number: n, State: Draft, Policies: []Policy{}}, nil
}

// draftFrom makes the next version of a scope as a copy of from.
func (st *state) draftFrom(sc *ScopeRecord, from *Version, now time.Time, who string) *Version {
	n := sc.LastVersion + 1
	v := from.Clone()
	v.Name, v.Number, v.State = VersionName(n), n, Draft
	v.Created, v.CreatedBy = now, who
	return v
}

// upsert puts p into v: replacing the intent with the same Key, or
// appending it.
func upsert(v *Version, p Policy) {
	for i := range v.Policies {
		if v.Policies[i].Key() == p.Key() {
			v.Policies[i] = p
			return
		}
	}
	v.Policies = append(v.Policies, p)
}

// checkRefs refuses scope:NAME and service:NS/NAME references to things
// that do not exist, naming them.
func (r *Repo) checkRefs(st *state, d *Document, opts ApplyOptions) *Error {
	for i, p := range d.Version.Policies {
		prefix := ""
		if d.Kind == KindPolicyVersion {
			prefix = fmt.Sprintf("policies[%d].", i)
		}
		for field, text := range map[string]string{"consumer": p.Consumer, "provider": p.Provider} {
			ep, err := ParseEndpoint(text)
			if err != nil {
				continue // reported by the parser
			}
			switch ep.Kind {
			case EndpointScope:
				if _, ok := st.scopes[ep.Scope]; !ok {
					return d.errorf(prefix+field, "scope %q does not exist", ep.Scope)
				}
			case EndpointService:
				if opts.ServiceExists != nil && !opts.ServiceExists(ep.Namespace, ep.Name) {
					return d.errorf(prefix+field, "service %s/%s does not exist in the inventory", ep.Namespace, ep.Name)
				}
			}
		}
	}
	return nil
}

// check compiles the resulting state, so nothing that cannot be evaluated
// is saved.
func (r *Repo) check(st *state, docs []*Document, opts ApplyOptions) *Error {
	set := Set{Versions: map[string]*Version{}}
	for _, s := range sortedScopes(st.scopes) {
		set.Scopes = append(set.Scopes, s.Scope)
	}
	for name, vs := range st.versions {
		for _, v := range vs {
			if _, ok := st.scopes[name]; !ok {
				continue
			}
			one := Set{Scopes: set.Scopes, Versions: map[string]*Version{name: v}}
			if _, err := Compile(one); err != nil {
				return blame(docs, name, err)
			}
		}
	}
	if _, err := Compile(set); err != nil {
		return blame(docs, "", err)
	}
	return nil
}

// blame attributes a compile error to the first document about scope (or
// the first document).
func blame(docs []*Document, scope string, err error) *Error {
	for _, d := range docs {
		if scope == "" || (d.Version != nil && d.Version.Scope == scope) || (d.Scope != nil && d.Scope.Name == scope) {
			return &Error{Pos: d.Pos, Msg: err.Error()}
		}
	}
	if len(docs) > 0 {
		return &Error{Pos: docs[0].Pos, Msg: err.Error()}
	}
	return &Error{Msg: err.Error()}
}

func (r *Repo) deleteDoc(st *state, d *Document, opts ApplyOptions) *Error {
	now := r.now().UTC()
	switch d.Kind {
	case KindInventoryFilter:
		if _, ok := st.filters[d.Filter.Name]; !ok {
			return nil
		}
		delete(st.filters, d.Filter.Name)
		st.dirtyFilters[d.Filter.Name] = true
		st.change(KindInventoryFilter, d.Filter.Name, "deleted", nil)
	case KindScope:
		name := d.Scope.Name
		if _, ok := st.scopes[name]; !ok {
			return nil
		}
		var kids []string
		for _, s := range st.scopes {
			if s.Parent == name {
				kids = append(kids, s.Name)
			}
		}
		if len(kids) > 0 {
			sort.Strings(kids)
			return d.errorf("name", "scope %s still has children: %s", name, strings.Join(kids, ", "))
		}
		if st.scopes[name].Enforced != "" {
			return d.errorf("name", "scope %s has an enforced version (%s); stop enforcing it first", name, st.scopes[name].Enforced)
		}
		for _, v := range st.versions[name] {
			st.deadVersions[versionKey(v)] = v
			delete(st.dirtyVersions, versionKey(v))
		}
		delete(st.versions, name)
		delete(st.scopes, name)
		delete(st.dirtyScopes, name)
		st.deadScopes[name] = true
		st.change(KindScope, name, "deleted", nil)
	case KindPolicyVersion:
		sc, ok := st.scopes[d.Version.Scope]
		if !ok {
			return nil
		}
		if d.Version.Name == "" {
			return d.errorf("version", "name the version to delete")
		}
		n, _ := ParseVersionName(d.Version.Name)
		for i, v := range st.versions[sc.Name] {
			if v.Number != n {
				continue
			}
			if v.Frozen() {
				return d.errorf("version", "version %s of scope %s is %s and immutable", v.Name, sc.Name, v.State)
			}
			st.versions[sc.Name] = append(st.versions[sc.Name][:i:i], st.versions[sc.Name][i+1:]...)
			st.deadVersions[versionKey(v)] = v
			delete(st.dirtyVersions, versionKey(v))
			st.change(KindPolicyVersion, sc.Name+"@"+v.Name, "deleted", nil)
			return nil
		}
	case KindPolicy:
		sc, ok := st.scopes[d.Version.Scope]
		if !ok {
			return nil
		}
		target, e := st.target(d, sc)
		if e != nil || target.Number > sc.LastVersion {
			return nil // nothing to delete from
		}
		key := d.Policy.Key()
		idx := -1
		for i := range target.Policies {
			if target.Policies[i].Key() == key {
				idx = i
			}
		}
		if idx < 0 {
			return nil
		}
		next := target.Clone()
		if target.Frozen() {
			if d.Version.Name != "" {
				return d.errorf("version", "version %s of scope %s is %s and immutable", target.Name, sc.Name, target.State)
			}
			next = st.draftFrom(sc, target, now, opts.Who)
			sc.LastVersion = next.Number
			st.dirtyScopes[sc.Name] = true
			st.newDraft[sc.Name] = next
		}
		next.Policies = append(next.Policies[:idx:idx], next.Policies[idx+1:]...)
		next.Updated, next.UpdatedBy = now, opts.Who
		st.putVersion(next)
		op := "updated"
		if target.Frozen() {
			op = "created"
		}
		st.change(KindPolicy, sc.Name+"@"+next.Name, op, []string{"- " + PolicyString(*d.Policy)})
	}
	return nil
}
