// Package analyze compares policy decisions with what the network did:
// for every flow, the decision of a policy version (internal/policy's
// evaluator, with the ends resolved through the inventory at the flow's
// own time) against the flow's outcome (replied or not) gives its verdict:
// Permitted, Escaped, Rejected or Misdropped. Flows no scope decides are
// counted as unscoped, never dropped.
//
// The package does no I/O of its own: callers hand it flows (from the flow
// store for a time range, or as the flow service emits them) and an
// inventory Resolver.
package analyze

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// Resolver is the inventory at a time: the flow pipeline's resolver, which
// internal/inventory implements from its history.
type Resolver = flow.Resolver

// Input turns a flow into the evaluator's input, resolving both ends at the
// flow's start. translated reports a flow that is the rewritten copy of
// another one (the node-address side of an egress SNAT, the outer flow of
// a tunnel): it is decided with its original and gets no verdict of its
// own.
func Input(f *flow.Flow, r Resolver) (in policy.Flow, translated bool) {
	return InputResolved(f, Resolve(f, r))
}

// Resolve asks r what the flow pipeline's enrichment asked it: the
// workloads holding both ends at the flow's start, and the service the
// destination address and port belonged to (only when analysis uses it: a
// node port, or the DNAT-related flow to a backend).
func Resolve(f *flow.Flow, r Resolver) flow.Ends {
	var e flow.Ends
	if r == nil {
		return e
	}
	t := f.Start
	e.Src, _ = r.WorkloadAt(f.Src.IP, t)
	e.Dst, _ = r.WorkloadAt(f.Dst.IP, t)
	if f.Dst.Port != 0 && ((e.Dst != nil && e.Dst.Kind == inventory.KindNode) || (f.Dst.Service != "" && dnatRelated(f))) {
		e.DstService, _ = r.ServiceFor(f.Dst.IP, f.Dst.Port, f.Proto, t)
	}
	return e
}

func dnatRelated(f *flow.Flow) bool {
	for _, rel := range f.Related {
		if rel.Reason == flow.ReasonClusterIP || rel.Reason == flow.ReasonNodePort {
			return true
		}
	}
	return false
}

// InputResolved is Input with both ends already resolved (by the flow
// pipeline, for live analysis: flow.Ends).
func InputResolved(f *flow.Flow, ends flow.Ends) (in policy.Flow, translated bool) {
	return input(f, ends, true)
}

// input is InputResolved; without parse, the peers' addresses are left as
// text (policy.Peer.Addr) for the evaluator to parse only if it must.
func input(f *flow.Flow, ends flow.Ends, parse bool) (in policy.Flow, translated bool) {
	in.Src = policy.Peer{Addr: f.Src.IP, Workload: ends.Src}
	in.Dst = policy.Peer{Addr: f.Dst.IP, Workload: ends.Dst}
	if parse {
		in.Src.IP, in.Dst.IP = parseIP(f.Src.IP), parseIP(f.Dst.IP)
	}
	in.Proto = protoOf(f.Proto)
	in.Port = f.Dst.Port
	if f.Tunnel != "" {
		translated = true
	}
	dnat := false
	for _, rel := range f.Related {
		switch rel.Reason {
		case flow.ReasonEgress:
			if in.Src.Workload != nil && in.Src.Workload.Kind == inventory.KindNode {
				translated = true
			}
		case flow.ReasonClusterIP, flow.ReasonNodePort:
			dnat = true
		}
	}
	dw, svc := in.Dst.Workload, ends.DstService
	var kind inventory.Kind
	if dw != nil {
		// The pipeline named the kind of the version it resolved: reading
		// the flow's copy spares loading the workload.
		if kind = inventory.Kind(f.Dst.Kind); parse || f.Dst.Workload == "" {
			kind = dw.Kind
		}
	}
	switch {
	case kind == inventory.KindService:
		in.Service, in.ServicePort = dw, f.Dst.Port
	case kind == inventory.KindNode:
		// A node port: the service that owns it, if any.
		if svc != nil {
			for _, p := range svc.Ports {
				if uint16(p.NodePort) == f.Dst.Port {
					in.Service, in.ServicePort = svc, uint16(p.Port)
				}
			}
		}
	case dnat && f.Dst.Service != "":
		// The DNAT-related flow to a backend: the service port whose
		// target port it reached.
		if svc != nil {
			in.Service, in.ServicePort = svc, servicePortFor(svc, f.Dst.IP, f.Dst.Port)
		}
	}
	return in, translated
}

func parseIP(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// protoOf is policy.ParseProto for the names flows carry, without its
// error path for the common ones.
func protoOf(s string) policy.Proto {
	switch s {
	case "tcp":
		return policy.ProtoTCP
	case "udp":
		return policy.ProtoUDP
	}
	p, _ := policy.ParseProto(s)
	return p
}

// servicePortFor returns the service port whose target port is port on the
// backend ip (a number, or a name the endpoint resolved to port).
func servicePortFor(svc *inventory.Workload, ip string, port uint16) uint16 {
	ps := strconv.Itoa(int(port))
	for _, p := range svc.Ports {
		if p.TargetPort == ps || (p.TargetPort == "" && uint16(p.Port) == port) {
			return uint16(p.Port)
		}
	}
	// A named target port: the endpoint's resolved ports.
	for _, e := range svc.Endpoints {
		if e.IP != ip {
			continue
		}
		for _, ep := range e.Ports {
			if uint16(ep) == port && len(svc.Ports) == 1 {
				return uint16(svc.Ports[0].Port)
			}
		}
	}
	if len(svc.Ports) > 0 {
		return uint16(svc.Ports[0].Port)
	}
	return port
}

// Answered is the network outcome of a flow: whether the destination took
// the traffic. A TCP connection whose SYN was seen is answered only by a
// SYN-ACK (a refusal with RST from a closed port is not); other flows are
// answered when anything came back (the flow's replied field).
func Answered(f *flow.Flow) bool {
	if f.Proto == "tcp" && f.HasFlag(flow.FlagSYN) {
		return f.HasFlag(flow.FlagSYNACK)
	}
	return f.Replied
}

// FlowVerdict is one flow's analysis.
type FlowVerdict struct {
	Flow     *flow.Flow      `json:"flow"` // the caller's flow, not a copy
	Verdict  policy.Verdict  `json:"verdict"`
	Decision policy.Decision `json:"decision"`
	// Rule is the deciding rule (the denying side, else the allowing one)
	// of the judged sides.
	Rule       policy.RuleRef `json:"rule"`
	Translated bool           `json:"translated,omitempty"`
	// Judged are the sides the verdict, the rule and the counts take from
	// Decision: both, or, for a flow crossing the edge of the analyzed
	// scope, the one side that scope decides (egress when its consumer is
	// in the scope, ingress when its provider is). Decision keeps both.
	Judged policy.Direction `json:"judged"`
}

// judged returns the decision restricted to the judged sides (the other
// side NoAction).
func (fv *FlowVerdict) judged() policy.Decision {
	d := fv.Decision
	switch fv.Judged {
	case policy.Egress:
		d.Ingress = policy.SideDecision{}
	case policy.Ingress:
		d.Egress = policy.SideDecision{}
	}
	return d
}

// Analyzer decides flows with one evaluator session; not safe for
// concurrent use.
type Analyzer struct {
	ev    *policy.Evaluator
	sess  *policy.Session
	r     Resolver
	scope string
}

// New returns an analyzer of the flows that touch scope (one end's
// deciding scope is scope or below it; "" for every flow). A flow crossing
// the scope's edge is judged by the side the scope decides: its egress
// when the consumer is in the scope, its ingress when the provider is;
// the other scope's decision is kept in FlowVerdict.Decision but takes no
// part in the verdict or the counts, so a scope's analysis answers what
// its own version does.
func New(ev *policy.Evaluator, r Resolver, scope string) *Analyzer {
	return &Analyzer{ev: ev, sess: ev.NewSession(), r: r, scope: scope}
}

// Analyze decides one flow. ok is false when the flow does not touch the
// analyzer's scope.
func (a *Analyzer) Analyze(f *flow.Flow) (fv FlowVerdict, ok bool) {
	return a.AnalyzeResolved(f, Resolve(f, a.r))
}

// AnalyzeResolved is Analyze with both ends already resolved at the flow's
// start (the flow pipeline's flow.Ends, handed to the flow service's
// OnFlows hook).
func (a *Analyzer) AnalyzeResolved(f *flow.Flow, ends flow.Ends) (fv FlowVerdict, ok bool) {
	in, translated := input(f, ends, false)
	d := a.sess.Evaluate(&in)
	fv = FlowVerdict{Flow: f, Decision: d, Translated: translated}
	if a.scope != "" {
		eg, ing := a.ev.Within(d.Egress.Scope, a.scope), a.ev.Within(d.Ingress.Scope, a.scope)
		switch {
		case !eg && !ing:
			return fv, false
		case !ing:
			fv.Judged = policy.Egress
		case !eg:
			fv.Judged = policy.Ingress
		}
	}
	if !translated {
		j := fv.judged()
		fv.Verdict = policy.VerdictOf(j.Action(), Answered(f))
		if j.Action() != policy.NoAction {
			fv.Rule = j.Deciding().Rule
		}
	}
	return fv, true
}

// Counts are flows per verdict.
type Counts struct {
	Permitted  int `json:"permitted"`
	Escaped    int `json:"escaped"`
	Rejected   int `json:"rejected"`
	Misdropped int `json:"misdropped"`
	Unscoped   int `json:"unscoped"`
}

// Add counts one verdict.
func (c *Counts) Add(v policy.Verdict) {
	switch v {
	case policy.Permitted:
		c.Permitted++
	case policy.Escaped:
		c.Escaped++
	case policy.Rejected:
		c.Rejected++
	case policy.Misdropped:
		c.Misdropped++
	default:
		c.Unscoped++
	}
}

// Of returns the count of one verdict.
func (c Counts) Of(v policy.Verdict) int {
	switch v {
	case policy.Permitted:
		return c.Permitted
	case policy.Escaped:
		return c.Escaped
	case policy.Rejected:
		return c.Rejected
	case policy.Misdropped:
		return c.Misdropped
	}
	return c.Unscoped
}

// Total is the sum of all verdicts.
func (c Counts) Total() int { return c.Permitted + c.Escaped + c.Rejected + c.Misdropped + c.Unscoped }

// RuleCounts are the verdicts of the flows one rule decided (a flow whose
// two sides two rules decided counts for both).
type RuleCounts struct {
	Rule   policy.RuleRef `json:"rule"`
	Action policy.Action  `json:"action"`
	Intent string         `json:"intent,omitempty"` // the intent, rendered
	Counts
}

// ScopeCounts are the verdicts of the flows one scope decided (a flow
// counts for each side's scope once).
type ScopeCounts struct {
	Scope string `json:"scope"`
	Counts
}

// MinuteCounts are the verdicts of the flows starting in one minute.
type MinuteCounts struct {
	Minute time.Time `json:"minute"`
	Counts
}

// Report is the result of an analysis.
type Report struct {
	Scope    string            `json:"scope,omitempty"`
	Versions map[string]string `json:"versions"` // scope → version analyzed
	From     time.Time         `json:"from"`
	To       time.Time         `json:"to"`
	Flows    int               `json:"flows"` // flows analyzed (touching the scope)
	Counts   Counts            `json:"counts"`
	// Translated are rewritten copies of analyzed flows (SNAT, tunnels),
	// counted here rather than judged twice.
	Translated int            `json:"translated"`
	ByRule     []RuleCounts   `json:"byRule"`
	ByScope    []ScopeCounts  `json:"byScope"`
	ByMinute   []MinuteCounts `json:"byMinute"`
	// Truncated is set when the flow source stopped at its limit.
	Truncated bool `json:"truncated,omitempty"`
}

// Tally accumulates a Report.
type Tally struct {
	rep     Report
	scopes  map[string]*scopeTally
	other   map[policy.RuleRef]*RuleCounts // rules of a second version of a scope
	minutes map[int64]*MinuteCounts
	intents func(policy.RuleRef) string
	// The last scope and minute counted: flows come in runs.
	last       *scopeTally
	lastMinute *MinuteCounts
}

// scopeTally is one scope's counts and its rules' (the version first
// seen), by rule index + 1 (0: the catch-all).
type scopeTally struct {
	ScopeCounts
	version string
	rules   []*RuleCounts
	counted bool // ScopeCounts took part (a side decided in the scope)
}

// NewTally starts a report; intents renders a rule's intent (nil: none).
func NewTally(scope string, versions map[string]string, from, to time.Time, intents func(policy.RuleRef) string) *Tally {
	return &Tally{rep: Report{Scope: scope, Versions: versions, From: from, To: to},
		scopes: map[string]*scopeTally{}, other: map[policy.RuleRef]*RuleCounts{}, minutes: map[int64]*MinuteCounts{}, intents: intents}
}

func (t *Tally) scope(name string) *scopeTally {
	if st := t.last; st != nil && st.Scope == name {
		return st
	}
	st := t.scopes[name]
	if st == nil {
		st = &scopeTally{ScopeCounts: ScopeCounts{Scope: name}}
		t.scopes[name] = st
	}
	t.last = st
	return st
}

// rule returns the counts of the rule that decided sd.
func (t *Tally) rule(sd *policy.SideDecision) *RuleCounts {
	ref := &sd.Rule
	st := t.scope(ref.Scope)
	if st.rules == nil {
		st.version = ref.Version
	}
	i := ref.Index + 1
	if st.version != ref.Version || i < 0 {
		rc := t.other[*ref]
		if rc == nil {
			rc = t.newRule(sd)
			t.other[*ref] = rc
		}
		return rc
	}
	if i >= len(st.rules) {
		st.rules = append(st.rules, make([]*RuleCounts, i+1-len(st.rules))...)
	}
	rc := st.rules[i]
	if rc == nil {
		rc = t.newRule(sd)
		st.rules[i] = rc
	}
	return rc
}

func (t *Tally) newRule(sd *policy.SideDecision) *RuleCounts {
	rc := &RuleCounts{Rule: sd.Rule, Action: sd.Action}
	if t.intents != nil && sd.Rule.Scope != "" {
		rc.Intent = t.intents(sd.Rule)
	}
	return rc
}

// Add counts one analyzed flow.
func (t *Tally) Add(fv *FlowVerdict) {
	if fv.Translated {
		t.rep.Translated++
		return
	}
	t.rep.Flows++
	t.rep.Counts.Add(fv.Verdict)
	jd := fv.judged()
	d := &jd
	// Each side's rule counts the flow (once when both sides are one
	// rule); unscoped flows count once, under no rule.
	if d.Egress.Action != policy.NoAction || d.Ingress.Action == policy.NoAction {
		t.rule(&d.Egress).Add(fv.Verdict)
	}
	if d.Ingress.Action != policy.NoAction && d.Ingress.Rule != d.Egress.Rule {
		t.rule(&d.Ingress).Add(fv.Verdict)
	}
	// Each side's scope counts the flow once.
	if s := d.Egress.Scope; s != "" {
		eg := t.scope(s)
		eg.counted = true
		eg.Add(fv.Verdict)
	}
	if s := d.Ingress.Scope; s != d.Egress.Scope && s != "" {
		in := t.scope(s)
		in.counted = true
		in.Add(fv.Verdict)
	}
	m := fv.Flow.Start.Unix()
	m -= ((m % 60) + 60) % 60
	mc := t.lastMinute
	if mc == nil || mc.Minute.Unix() != m {
		mc = t.minutes[m]
		if mc == nil {
			mc = &MinuteCounts{Minute: time.Unix(m, 0).UTC()}
			t.minutes[m] = mc
		}
		t.lastMinute = mc
	}
	mc.Add(fv.Verdict)
}

// Report returns the report, groups sorted (rules by flows, descending).
func (t *Tally) Report() *Report {
	r := t.rep
	r.ByRule = make([]RuleCounts, 0, len(t.other))
	r.ByScope = make([]ScopeCounts, 0, len(t.scopes))
	for _, st := range t.scopes {
		for _, rc := range st.rules {
			if rc != nil {
				r.ByRule = append(r.ByRule, *rc)
			}
		}
		if st.counted {
			r.ByScope = append(r.ByScope, st.ScopeCounts)
		}
	}
	for _, rc := range t.other {
		r.ByRule = append(r.ByRule, *rc)
	}
	sort.Slice(r.ByRule, func(i, j int) bool {
		if a, b := r.ByRule[i].Total(), r.ByRule[j].Total(); a != b {
			return a > b
		}
		return r.ByRule[i].Rule.String() < r.ByRule[j].Rule.String()
	})
	sort.Slice(r.ByScope, func(i, j int) bool { return r.ByScope[i].Scope < r.ByScope[j].Scope })
	r.ByMinute = make([]MinuteCounts, 0, len(t.minutes))
	for _, mc := range t.minutes {
		r.ByMinute = append(r.ByMinute, *mc)
	}
	sort.Slice(r.ByMinute, func(i, j int) bool { return r.ByMinute[i].Minute.Before(r.ByMinute[j].Minute) })
	return &r
}

// Cell selects the flows of one cell of a report for drill-down; zero
// fields select everything.
type Cell struct {
	Verdict *policy.Verdict
	Rule    string    // RuleRef.String()
	Scope   string    // a side's deciding scope
	Minute  time.Time // start minute
}

// Holds reports whether fv is in the cell.
func (c Cell) Holds(fv *FlowVerdict) bool {
	if fv.Translated {
		return false
	}
	if c.Verdict != nil && fv.Verdict != *c.Verdict {
		return false
	}
	if c.Rule != "" && !strings.EqualFold(fv.Rule.String(), c.Rule) {
		return false
	}
	if d := fv.judged(); c.Scope != "" && d.Egress.Scope != c.Scope && d.Ingress.Scope != c.Scope {
		return false
	}
	if !c.Minute.IsZero() && !fv.Flow.Start.UTC().Truncate(time.Minute).Equal(c.Minute.UTC().Truncate(time.Minute)) {
		return false
	}
	return true
}
