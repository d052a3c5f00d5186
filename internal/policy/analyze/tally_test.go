package analyze

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/policy"
)

// referenceReport counts verdicts the plain way: maps keyed by the whole
// rule reference and scope name.
func referenceReport(fvs []FlowVerdict) (map[policy.RuleRef]Counts, map[string]Counts, map[int64]Counts, Counts, int) {
	rules, scopes, minutes := map[policy.RuleRef]Counts{}, map[string]Counts{}, map[int64]Counts{}
	var all Counts
	translated := 0
	add := func(c Counts, v policy.Verdict) Counts { c.Add(v); return c }
	for _, fv := range fvs {
		if fv.Translated {
			translated++
			continue
		}
		all.Add(fv.Verdict)
		d := fv.Decision
		if d.Egress.Action != policy.NoAction || d.Ingress.Action == policy.NoAction {
			rules[d.Egress.Rule] = add(rules[d.Egress.Rule], fv.Verdict)
		}
		if d.Ingress.Action != policy.NoAction && d.Ingress.Rule != d.Egress.Rule {
			rules[d.Ingress.Rule] = add(rules[d.Ingress.Rule], fv.Verdict)
		}
		if d.Egress.Scope != "" {
			scopes[d.Egress.Scope] = add(scopes[d.Egress.Scope], fv.Verdict)
		}
		if d.Ingress.Scope != "" && d.Ingress.Scope != d.Egress.Scope {
			scopes[d.Ingress.Scope] = add(scopes[d.Ingress.Scope], fv.Verdict)
		}
		m := fv.Flow.Start.UTC().Truncate(time.Minute).Unix()
		minutes[m] = add(minutes[m], fv.Verdict)
	}
	return rules, scopes, minutes, all, translated
}

// The tally (per-scope slices, last-scope and last-minute caches) counts
// exactly what the plain maps count, over random decisions with unscoped
// sides, catch-alls, two versions of one scope, flows before 1970 and
// translated copies.
func TestTallyAgreesWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	scopes := []string{"a", "b", "c", ""}
	side := func() policy.SideDecision {
		s := scopes[r.IntN(len(scopes))]
		if s == "" {
			return policy.SideDecision{}
		}
		v := "v1"
		if s == "c" && r.IntN(3) == 0 {
			v = "v2"
		}
		i := r.IntN(6) - 1
		key := "catch-all"
		if i >= 0 {
			key = "k" + string(rune('0'+i))
		}
		a := policy.Allow
		if r.IntN(2) == 0 {
			a = policy.Deny
		}
		return policy.SideDecision{Scope: s, Action: a, Rule: policy.RuleRef{Scope: s, Version: v, Index: i, Key: key}}
	}
	base := time.Date(1969, 12, 31, 23, 50, 0, 0, time.UTC)
	var fvs []FlowVerdict
	for i := range 5000 {
		f := &flow.Flow{ID: "f", Start: base.Add(time.Duration(r.IntN(40*60)) * time.Second)}
		d := policy.Decision{Egress: side(), Ingress: side()}
		if i%7 == 0 {
			d.Ingress = d.Egress
		}
		fvs = append(fvs, FlowVerdict{Flow: f, Decision: d, Verdict: policy.VerdictOf(d.Action(), r.IntN(2) == 0), Translated: r.IntN(50) == 0})
	}
	tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
	for i := range fvs {
		tl.Add(&fvs[i])
	}
	rep := tl.Report()
	rules, sc, minutes, all, translated := referenceReport(fvs)
	if rep.Counts != all || rep.Translated != translated || rep.Flows != all.Total() {
		t.Fatalf("totals %+v (%d translated), want %+v (%d)", rep.Counts, rep.Translated, all, translated)
	}
	got := map[policy.RuleRef]Counts{}
	for _, rc := range rep.ByRule {
		if _, dup := got[rc.Rule]; dup {
			t.Fatalf("rule %v listed twice", rc.Rule)
		}
		got[rc.Rule] = rc.Counts
	}
	if !reflect.DeepEqual(got, rules) {
		t.Fatalf("by rule:\n got %v\nwant %v", got, rules)
	}
	gs := map[string]Counts{}
	for _, s := range rep.ByScope {
		gs[s.Scope] = s.Counts
	}
	if !reflect.DeepEqual(gs, sc) {
		t.Fatalf("by scope:\n got %v\nwant %v", gs, sc)
	}
	gm := map[int64]Counts{}
	for _, m := range rep.ByMinute {
		gm[m.Minute.Unix()] = m.Counts
	}
	if !reflect.DeepEqual(gm, minutes) {
		t.Fatalf("by minute:\n got %v\nwant %v", gm, minutes)
	}
	if !sort.SliceIsSorted(rep.ByMinute, func(i, j int) bool { return rep.ByMinute[i].Minute.Before(rep.ByMinute[j].Minute) }) {
		t.Fatal("minutes not in order")
	}
}

// Live analysis with the pipeline's ends (addresses left as text for the
// evaluator) decides every flow as historical analysis through the
// inventory does.
func TestAnalyzeResolvedAgreesWithResolver(t *testing.T) {
	ev, inv, flows := benchSetup(t, 4000)
	hist := New(ev, inv, "")
	live := New(ev, nil, "")
	for i := range flows {
		f := &flows[i]
		want, _ := hist.Analyze(f)
		got, _ := live.AnalyzeResolved(f, pipelineEnds(f, inv))
		if got.Verdict != want.Verdict || got.Decision != want.Decision || got.Translated != want.Translated {
			t.Fatalf("flow %d %s→%s:%d: live %v %+v, historical %v %+v", i, f.Src.IP, f.Dst.IP, f.Dst.Port, got.Verdict, got.Decision, want.Verdict, want.Decision)
		}
	}
}
