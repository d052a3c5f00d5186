package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// Set is what an Evaluator decides with: the scope tree and, per scope, the
// version in force (a scope without one has no intents and its catch-all).
type Set struct {
	Scopes   []Scope
	Versions map[string]*Version // by scope name
	// Services resolves service:NAMESPACE/NAME consumers to the pods their
	// selector picks (key "NAMESPACE/NAME"; optional: without it a service
	// consumer matches only the service's own addresses).
	Services map[string]*inventory.Workload
}

// Peer is one end of a flow as the inventory knew it at the flow's time.
type Peer struct {
	IP netip.Addr
	// Addr is IP as text, for callers that have only the text (flows):
	// when IP is not set, a session parses Addr only if it must (a
	// workload's address it has not classified yet, or no workload).
	Addr string
	// Workload held IP at the flow's time (nil: none did, e.g. an
	// external address).
	Workload *inventory.Workload
}

// Flow is what the evaluator decides: the two ends, resolved at the flow's
// time, the protocol and the destination port on the wire.
type Flow struct {
	Src, Dst Peer
	Proto    Proto
	Port     uint16
	// Service is the service the connection addressed, when it went
	// through one: Dst is its cluster IP, a node and its node port, or (on
	// the DNAT-related flow) a backend pod. ServicePort is the service
	// port it addressed. A provider service:NS/NAME matches on these.
	Service     *inventory.Workload
	ServicePort uint16
}

// RuleRef names what decided one side of a flow.
type RuleRef struct {
	Scope   string `json:"scope"`
	Version string `json:"version,omitempty"`
	// Index is the intent's position in the version's Policies; -1 for
	// the catch-all.
	Index int `json:"index"`
	// Key is the intent's Key ("catch-all" for the catch-all).
	Key string `json:"key"`
}

// CatchAll reports whether the scope's catch-all decided.
func (r RuleRef) CatchAll() bool { return r.Index < 0 }

// String is "SCOPE@VERSION#INDEX" or "SCOPE@VERSION catch-all".
func (r RuleRef) String() string {
	if r.Scope == "" {
		return ""
	}
	s := r.Scope
	if r.Version != "" {
		s += "@" + r.Version
	}
	if r.Index < 0 {
		return s + " catch-all"
	}
	return s + "#" + strconv.Itoa(r.Index)
}

// SideDecision is the decision of one side of a flow.
type SideDecision struct {
	// Scope is the deciding scope; empty when that end is unscoped, and
	// then Action is NoAction.
	Scope  string  `json:"scope,omitempty"`
	Action Action  `json:"action,omitempty"`
	Rule   RuleRef `json:"rule"`
}

// Decision is the decision of both sides of a flow.
type Decision struct {
	Egress  SideDecision `json:"egress"`
	Ingress SideDecision `json:"ingress"`
}

// Action is DENY if a side denies, ALLOW if a side allows and none denies,
// NoAction if neither end is scoped.
func (d Decision) Action() Action {
	if d.Egress.Action == Deny || d.Ingress.Action == Deny {
		return Deny
	}
	if d.Egress.Action == Allow || d.Ingress.Action == Allow {
		return Allow
	}
	return NoAction
}

// Deciding returns the side that decided the flow: the denying side (egress
// first), else the allowing one (egress first).
func (d Decision) Deciding() SideDecision {
	switch {
	case d.Egress.Action == Deny:
		return d.Egress
	case d.Ingress.Action == Deny:
		return d.Ingress
	case d.Egress.Action == Allow:
		return d.Egress
	}
	return d.Ingress
}

// Evaluator decides flows against a compiled Set. It is immutable and safe
// for concurrent use; Session gives a goroutine its own caches.
type Evaluator struct {
	scopes   []cscope
	byName   map[string]int
	top      []int // children of the root, by name
	atoms    []atom
	filters  []*filter.Filter // filter atoms' filters, by bit
	services map[string]*inventory.Workload
	// chains[side][scope]: the intents deciding that side in that scope, in
	// precedence order.
	chains [3][][]*rule
	rules  []*rule // by rule.id
	nbits  int

	mu     sync.Mutex
	shared *Session
}

type cscope struct {
	name     string
	parent   int // -1: the root
	filter   *filter.Filter
	children []int
	catchAll Action
	version  string
	depth    int
}

type atomKind uint8

const (
	atomAny atomKind = iota
	atomBit          // a filter or scope membership: a bit of the peer's class
	atomCIDR
	atomService
	atomHostNode // host-node: a node, and per flow the other end's host
)

type atom struct {
	kind   atomKind
	bit    int
	prefix netip.Prefix
	svc    string // "NAMESPACE/NAME"
}

type rule struct {
	id        int32 // index in Evaluator.rules
	ref       RuleRef
	action    Action
	class     Class
	prio      int
	order     int
	dir       Direction
	cons      int // atom index
	prov      int
	ports     []PortRange
	viaSvc    bool // provider is a service: ports are service ports
	scopeIdx  int
	anyPort   bool
	hasNamed  bool
	provAtomK atomKind
}

// Compile checks a Set and prepares it for fast evaluation. Errors name
// the scope, version and intent at fault.
func Compile(set Set) (*Evaluator, error) {
	e := &Evaluator{byName: map[string]int{}, services: set.Services}
	for _, s := range set.Scopes {
		if !ValidName(s.Name) || s.Name == RootScope {
			return nil, fmt.Errorf("scope %q: invalid name", s.Name)
		}
		if _, dup := e.byName[s.Name]; dup {
			return nil, fmt.Errorf("scope %q: defined twice", s.Name)
		}
		f, err := filter.Parse(s.Filter, inventory.Schema)
		if err != nil {
			return nil, fmt.Errorf("scope %s: filter: %w", s.Name, err)
		}
		ca := s.CatchAll
		if ca == NoAction {
			ca = Deny
		}
		e.byName[s.Name] = len(e.scopes)
		e.scopes = append(e.scopes, cscope{name: s.Name, filter: f, catchAll: ca, parent: -1})
	}
	for i, s := range set.Scopes {
		if s.Parent == "" || s.Parent == RootScope {
			e.top = append(e.top, i)
			continue
		}
		p, ok := e.byName[s.Parent]
		if !ok {
			return nil, fmt.Errorf("scope %s: parent %q does not exist", s.Name, s.Parent)
		}
		e.scopes[i].parent = p
		e.scopes[p].children = append(e.scopes[p].children, i)
	}
	byName := func(xs []int) {
		sort.Slice(xs, func(a, b int) bool { return e.scopes[xs[a]].name < e.scopes[xs[b]].name })
	}
	byName(e.top)
	for i := range e.scopes {
		byName(e.scopes[i].children)
		d, p := 0, e.scopes[i].parent
		for ; p >= 0; p = e.scopes[p].parent {
			if d++; d > len(e.scopes) {
				return nil, fmt.Errorf("scope %s: its parents form a cycle", e.scopes[i].name)
			}
		}
		e.scopes[i].depth = d
	}
	// Scope membership bits come first: bit i is scope i.
	e.nbits = len(e.scopes)
	atomIdx := map[string]int{}
	addAtom := func(text string) (int, error) {
		ep, err := ParseEndpoint(text)
		if err != nil {
			return 0, err
		}
		key := ep.String()
		if ep.Kind == EndpointFilter && key == "" {
			ep.Kind, key = EndpointAny, "any"
		}
		if i, ok := atomIdx[key]; ok {
			return i, nil
		}
		var a atom
		switch ep.Kind {
		case EndpointAny:
			a.kind = atomAny
		case EndpointScope:
			s, ok := e.byName[ep.Scope]
			if !ok {
				return 0, fmt.Errorf("scope %q does not exist", ep.Scope)
			}
			a.kind, a.bit = atomBit, s
		case EndpointService:
			a.kind, a.svc = atomService, ep.Namespace+"/"+ep.Name
		case EndpointCIDR:
			a.kind, a.prefix = atomCIDR, ep.Prefix
		case EndpointHostNode:
			a.kind = atomHostNode
		default:
			a.kind, a.bit = atomBit, e.nbits
			e.nbits++
			e.filters = append(e.filters, ep.Filter)
		}
		atomIdx[key] = len(e.atoms)
		e.atoms = append(e.atoms, a)
		return len(e.atoms) - 1, nil
	}
	var rules []*rule
	for name, v := range set.Versions {
		si, ok := e.byName[name]
		if !ok {
			return nil, fmt.Errorf("version %s of scope %q: the scope does not exist", v.Name, name)
		}
		sc := &e.scopes[si]
		sc.version = v.Name
		if v.CatchAll != NoAction {
			sc.catchAll = v.CatchAll
		}
		for i := range v.Policies {
			p := &v.Policies[i]
			where := fmt.Sprintf("scope %s version %s intent %d (%s)", name, v.Name, i+1, p.Key())
			r := &rule{ref: RuleRef{Scope: name, Version: v.Name, Index: i, Key: p.Key()}, action: p.Action,
				class: p.Class, prio: p.EffectivePriority(), order: i, dir: p.Direction, scopeIdx: si}
			if r.action != Allow && r.action != Deny {
				return nil, fmt.Errorf("%s: action: want ALLOW or DENY", where)
			}
			var err error
			if r.cons, err = addAtom(p.Consumer); err != nil {
				return nil, fmt.Errorf("%s: consumer: %w", where, err)
			}
			if r.prov, err = addAtom(p.Provider); err != nil {
				return nil, fmt.Errorf("%s: provider: %w", where, err)
			}
			r.viaSvc = e.atoms[r.prov].kind == atomService
			for _, ps := range p.Ports {
				pr, err := ParsePort(ps)
				if err != nil {
					return nil, fmt.Errorf("%s: ports: %w", where, err)
				}
				r.ports = append(r.ports, pr)
				r.hasNamed = r.hasNamed || pr.Name != ""
			}
			r.anyPort = len(r.ports) == 0
			r.id = int32(len(rules))
			rules = append(rules, r)
		}
	}
	// Precedence chains, per side and deciding scope.
	for _, side := range []Direction{Egress, Ingress} {
		e.chains[side] = make([][]*rule, len(e.scopes))
		for d := range e.scopes {
			path := e.path(d) // top … d
			var abs, def []*rule
			for _, r := range rules {
				if !r.dir.has(side) {
					continue
				}
				if k := indexOf(path, r.scopeIdx); k >= 0 {
					if r.class == Absolute {
						abs = append(abs, r)
					} else {
						def = append(def, r)
					}
				}
			}
			depth := func(r *rule) int { return e.scopes[r.scopeIdx].depth }
			sort.SliceStable(abs, func(a, b int) bool { return less(abs[a], abs[b], depth(abs[a]), depth(abs[b])) })
			sort.SliceStable(def, func(a, b int) bool { return less(def[a], def[b], -depth(def[a]), -depth(def[b])) })
			e.chains[side][d] = append(abs, def...)
		}
	}
	e.rules = rules
	return e, nil
}

// less orders two intents of one class: by the scope's rank (da, db), then
// priority, then position in the version.
func less(a, b *rule, da, db int) bool {
	if da != db {
		return da < db
	}
	if a.scopeIdx != b.scopeIdx {
		return a.ref.Scope < b.ref.Scope
	}
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	return a.order < b.order
}

func indexOf(xs []int, x int) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// path returns the scopes from the top of d's branch down to d.
func (e *Evaluator) path(d int) []int {
	var p []int
	for ; d >= 0; d = e.scopes[d].parent {
		p = append([]int{d}, p...)
	}
	return p
}

// Scopes returns the scopes a peer belongs to, from the top down to its
// deciding scope (empty: unscoped).
func (e *Evaluator) Scopes(p Peer) []string {
	s := e.session()
	defer e.mu.Unlock()
	c := s.classify(p)
	if c.scope < 0 {
		return nil
	}
	var out []string
	for _, i := range e.path(int(c.scope)) {
		out = append(out, e.scopes[i].name)
	}
	return out
}

// Evaluate decides f with the evaluator's shared session (serialized);
// concurrent callers should each use a Session.
func (e *Evaluator) Evaluate(f *Flow) Decision {
	s := e.session()
	defer e.mu.Unlock()
	return s.Evaluate(f)
}

func (e *Evaluator) session() *Session {
	e.mu.Lock()
	if e.shared == nil {
		e.shared = e.NewSession()
	}
	return e.shared
}

// ScopeNames returns the compiled scopes' names.
func (e *Evaluator) ScopeNames() []string {
	out := make([]string, len(e.scopes))
	for i, s := range e.scopes {
		out[i] = s.name
	}
	return out
}

// Session evaluates flows with its own caches. It is not safe for
// concurrent use; make one per goroutine.
type Session struct {
	e *Evaluator
	// Peers by workload version (its first address seen), by address for
	// peers no workload held, and by both for a workload's other addresses.
	byW    map[*inventory.Workload]*class
	byIP   map[netip.Addr]*class
	other  map[peerKey]*class
	svcs   map[*inventory.Workload]*svcClass
	nclass uint32
	nsvc   uint32
	// recent is a direct-mapped cache in front of byW, indexed by the
	// workload's address: one load instead of a map look-up for the
	// workloads a flow stream keeps meeting.
	recent *[recentSize]recentEntry
}

// sideNone is decide's result for an unscoped end.
const sideNone = -1 << 30

// A candidate is 16 bytes (see candidate).
var _ = [1]struct{}{}[unsafe.Sizeof(candidate{})-16]

const (
	recentBits = 13
	recentSize = 1 << recentBits
)

type recentEntry struct {
	w *inventory.Workload
	c *class
}

// recentSlot hashes the workload's address (Fibonacci hashing: workloads
// sit at regular strides, which a plain mask would fold together).
func recentSlot(w *inventory.Workload) uint {
	h := uint64(uintptr(unsafe.Pointer(w)))
	return uint((h * 0x9E3779B97F4A7C15) >> (64 - recentBits))
}

// maxCache bounds a session's caches; they are dropped when one grows past it.
const maxCache = 1 << 20

// NewSession returns a session over e.
func (e *Evaluator) NewSession() *Session {
	s := &Session{e: e}
	s.reset()
	return s
}

func (s *Session) reset() {
	s.byW = map[*inventory.Workload]*class{}
	s.byIP = map[netip.Addr]*class{}
	s.other = map[peerKey]*class{}
	s.svcs = map[*inventory.Workload]*svcClass{}
	s.nclass, s.nsvc = 0, 0
	s.recent = new([recentSize]recentEntry)
}

type peerKey struct {
	w  *inventory.Workload
	ip netip.Addr
}

// class is what one peer (workload version, address) is to the evaluator:
// its scopes and filters as bits, and for each side it decides the
// intents of its chain that can match it.
type class struct {
	id    uint32
	scope int32 // deciding scope, -1: unscoped
	bits  []uint64
	ip    netip.Addr
	addr  string // ip as text
	w     *inventory.Workload
	// egress: the deciding chain's intents whose consumer is this peer;
	// ingress: those whose provider is this peer (or a service, decided
	// per flow). Built on first use.
	egress, ingress []candidate
	built           [3]bool
	lists           [][]PortRange // candidates' port lists (portList)
}

func (c *class) has(bit int) bool { return c.bits[bit>>6]&(1<<(bit&63)) != 0 }

type svcClass struct {
	id  uint32
	w   *inventory.Workload
	key string // "NAMESPACE/NAME"
}

// candidate is an intent of a peer's chain with its ports as they apply
// there (named ports resolved when they can be, once). It is 16 bytes, so
// a scan over a peer's candidates loads few cache lines and not the rules.
type candidate struct {
	rid int32 // the rule (Evaluator.rules)
	// other is the bit the flow's other end must have when the other
	// end's atom is a bit (a filter or scope), else -1: decided by
	// atomMatch.
	other int32
	// The ports: portAny; portOne, the one range proto lo-hi (of the
	// service port when viaSvc); else portList (names resolved per flow)
	// or portListResolved, the ranges class.lists[lo|hi<<16].
	lo, hi   uint16
	proto    Proto
	portKind uint8
	viaSvc   bool
	// hostNode: an end is host-node; the flow must be between a pod and
	// the node it runs on (checked per flow).
	hostNode bool
}

const (
	portList uint8 = iota
	portListResolved
	portAny
	portOne
)

// ipRecord is the filter record of an address no workload held.
type ipRecord struct{ ip string }

func (r ipRecord) Field(name string) (filter.Value, bool) {
	if name == "ip" && r.ip != "" {
		return filter.Value{Strs: []string{r.ip}, Set: true}, true
	}
	return filter.Value{}, false
}

func (s *Session) classify(p Peer) *class {
	// first is the workload's class in byW (the first address it was seen
	// with), looked up once.
	var first *class
	if p.Workload != nil {
		if e := &s.recent[recentSlot(p.Workload)]; e.w == p.Workload {
			first = e.c
		} else if first = s.byW[p.Workload]; first != nil {
			*e = recentEntry{p.Workload, first}
		}
		if first != nil {
			if p.IP.IsValid() {
				if first.ip == p.IP {
					return first
				}
			} else if p.Addr == first.addr {
				return first
			}
		}
	}
	if !p.IP.IsValid() && p.Addr != "" {
		if a, err := netip.ParseAddr(p.Addr); err == nil {
			p.IP = a.Unmap()
		}
	}
	if p.Workload != nil {
		if first != nil {
			if first.ip == p.IP {
				return first
			}
			if c, ok := s.other[peerKey{p.Workload, p.IP}]; ok {
				return c
			}
		}
	} else if c, ok := s.byIP[p.IP]; ok {
		return c
	}
	if len(s.byW)+len(s.byIP)+len(s.other) >= maxCache {
		s.reset()
		first = nil
	}
	c := s.newClass(p)
	switch {
	case p.Workload == nil:
		s.byIP[p.IP] = c
	case first == nil:
		s.byW[p.Workload] = c
	default:
		s.other[peerKey{p.Workload, p.IP}] = c
	}
	return c
}

func (s *Session) newClass(p Peer) *class {
	e := s.e
	var rec filter.Record
	if p.Workload != nil {
		rec = inventory.Record{W: p.Workload}
	} else {
		ip := ""
		if p.IP.IsValid() {
			ip = p.IP.String()
		}
		rec = ipRecord{ip}
	}
	c := &class{id: s.nclass, scope: -1, bits: make([]uint64, (e.nbits+63)/64+1), ip: p.IP, addr: p.Addr, w: p.Workload}
	if c.addr == "" && p.IP.IsValid() {
		c.addr = p.IP.String()
	}
	s.nclass++
	// Scope membership, top down: a child is only tried within its parent.
	var walk func(xs []int)
	walk = func(xs []int) {
		for _, i := range xs {
			if e.scopes[i].filter.Match(rec) {
				c.bits[i>>6] |= 1 << (i & 63)
				walk(e.scopes[i].children)
			}
		}
	}
	walk(e.top)
	// The deciding scope: descend through the first member child by name.
	for xs := e.top; ; {
		next := -1
		for _, i := range xs {
			if c.has(i) {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		c.scope = int32(next)
		xs = e.scopes[next].children
	}
	for i, f := range e.filters {
		if f.Match(rec) {
			b := len(e.scopes) + i
			c.bits[b>>6] |= 1 << (b & 63)
		}
	}
	return c
}

// candidates returns the intents of c's chain for side that can match c
// on its own end of the flow.
func (s *Session) candidates(c *class, side Direction) []candidate {
	if c.built[side] {
		if side == Egress {
			return c.egress
		}
		return c.ingress
	}
	var out []candidate
	for _, r := range s.e.chains[side][c.scope] {
		resolved := !r.hasNamed
		cd := candidate{rid: r.id, other: -1, viaSvc: r.viaSvc,
			hostNode: s.e.atoms[r.cons].kind == atomHostNode || s.e.atoms[r.prov].kind == atomHostNode}
		ports := r.ports
		oa := &s.e.atoms[r.prov]
		if side == Ingress {
			oa = &s.e.atoms[r.cons]
		}
		if oa.kind == atomBit && !(side == Ingress && r.viaSvc) {
			cd.other = int32(oa.bit)
		}
		if side == Egress {
			if !s.atomMatch(r.cons, c, nil, false) {
				continue
			}
		} else if !r.viaSvc {
			if !s.atomMatch(r.prov, c, nil, true) {
				continue
			}
			if r.hasNamed {
				ports, resolved = resolvePorts(r.ports, false, c.w, nil), true
				if len(ports) == 0 {
					continue // only named ports, none declared here
				}
			}
		}
		switch {
		case r.anyPort:
			cd.portKind = portAny
		case resolved && len(ports) == 1:
			p := ports[0]
			cd.portKind, cd.proto, cd.lo, cd.hi = portOne, p.Proto, p.Lo, p.Hi
			if p.Lo == 0 {
				cd.hi = 0xffff
			}
		default:
			n := uint32(len(c.lists))
			cd.portKind, cd.lo, cd.hi = portList, uint16(n), uint16(n>>16)
			if resolved {
				cd.portKind = portListResolved
			}
			c.lists = append(c.lists, ports)
		}
		out = append(out, cd)
	}
	c.built[side] = true
	if side == Egress {
		c.egress = out
	} else {
		c.ingress = out
	}
	return out
}

func (s *Session) svcClass(w *inventory.Workload) *svcClass {
	if w == nil {
		return nil
	}
	if c, ok := s.svcs[w]; ok {
		return c
	}
	s.nsvc++
	c := &svcClass{id: s.nsvc, w: w, key: w.Namespace + "/" + w.Name}
	s.svcs[w] = c
	return c
}

// Evaluate decides f.
func (s *Session) Evaluate(f *Flow) Decision {
	src := s.classify(f.Src)
	dst := s.classify(f.Dst)
	if src.scope < 0 && dst.scope < 0 {
		return Decision{}
	}
	svc := s.svcClass(f.Service)
	eg, in := int32(sideNone), int32(sideNone)
	if src.scope >= 0 {
		eg = s.decide(Egress, src, dst, svc, f)
	}
	if dst.scope >= 0 {
		in = s.decide(Ingress, src, dst, svc, f)
	}
	return Decision{Egress: s.e.side(eg), Ingress: s.e.side(in)}
}

// side turns decide's result into the side's decision.
func (e *Evaluator) side(v int32) SideDecision {
	switch {
	case v == sideNone:
		return SideDecision{}
	case v >= 0:
		r := e.rules[v]
		return SideDecision{Scope: r.ref.Scope, Action: r.action, Rule: r.ref}
	}
	sc := &e.scopes[-1-v]
	return SideDecision{Scope: sc.name, Action: sc.catchAll, Rule: RuleRef{Scope: sc.name, Version: sc.version, Index: -1, Key: "catch-all"}}
}

// decide walks the candidates of the deciding end, checking the other end
// and the ports; it returns the deciding rule's id, or -1-scope for the
// deciding scope's catch-all.
func (s *Session) decide(side Direction, src, dst *class, svc *svcClass, f *Flow) int32 {
	own := src
	if side == Ingress {
		own = dst
	}
	other := dst
	if side == Ingress {
		other = src
	}
	cands := s.candidates(own, side)
	for i := range cands {
		c := &cands[i]
		if b := c.other; b >= 0 {
			// The common case inline: the other end's atom is a bit.
			if other.bits[b>>6]&(1<<(b&63)) == 0 {
				continue
			}
		} else {
			r := s.e.rules[c.rid]
			if side == Egress || r.viaSvc {
				if !s.atomMatch(r.prov, dst, svc, true) {
					continue
				}
			}
			if side == Ingress && !s.atomMatch(r.cons, src, nil, false) {
				continue
			}
		}
		if c.hostNode && !s.e.hostNodeHolds(c.rid, src, dst) {
			continue
		}
		switch c.portKind {
		case portAny:
		case portOne:
			port := f.Port
			if c.viaSvc {
				port = f.ServicePort
			}
			if (c.proto != ProtoAny && c.proto != f.Proto) || port < c.lo || port > c.hi {
				continue
			}
		default:
			ports := own.lists[uint32(c.lo)|uint32(c.hi)<<16]
			if !portsMatch(ports, c.portKind == portListResolved, c.viaSvc, dst.w, svc, f) {
				continue
			}
		}
		return c.rid
	}
	return -1 - own.scope
}

// portsMatch reports whether the flow's port (the service port for a
// service provider) is one of ps; names still in ps resolve on the
// destination (or the service) without allocating.
func portsMatch(ps []PortRange, resolved, viaSvc bool, dst *inventory.Workload, svc *svcClass, f *Flow) bool {
	port := f.Port
	if viaSvc {
		port = f.ServicePort
	}
	for i := range ps {
		p := &ps[i]
		if p.Name == "" || resolved {
			if p.Matches(f.Proto, port) {
				return true
			}
			continue
		}
		if p.Proto != ProtoAny && p.Proto != f.Proto {
			continue
		}
		if viaSvc {
			if svc != nil && servicePortNamed(svc.w, p.Name, p.Proto, port) {
				return true
			}
			continue
		}
		if hasNamedPort(dst, p.Name, p.Proto, port) {
			return true
		}
	}
	return false
}

func servicePortNamed(w *inventory.Workload, name string, proto Proto, port uint16) bool {
	for _, sp := range w.Ports {
		if sp.Name == name && uint16(sp.Port) == port && protoIs(sp.Protocol, proto) {
			return true
		}
	}
	return false
}

func (s *Session) atomMatch(i int, c *class, svc *svcClass, provider bool) bool {
	a := &s.e.atoms[i]
	if a.kind == atomBit { // the common case first
		return c.bits[a.bit>>6]&(1<<(a.bit&63)) != 0
	}
	switch a.kind {
	case atomAny:
		return true
	case atomBit:
		return c.has(a.bit)
	case atomCIDR:
		return c.ip.IsValid() && a.prefix.Contains(c.ip.Unmap())
	case atomService:
		if provider {
			return svc != nil && svc.w.Kind == inventory.KindService && svc.key == a.svc
		}
		return s.e.serviceConsumer(a.svc, c)
	case atomHostNode:
		// Its own end: a node; the relation to the other end is decided
		// per flow (hostNodeHolds).
		return c.w != nil && c.w.Kind == inventory.KindNode
	}
	return false
}

// hostNodeHolds reports whether rule rid's host-node end is the node the
// flow's other end runs on: consumer host-node, the source is the node of
// the destination pod; provider host-node, the destination is the node of
// the source pod.
func (e *Evaluator) hostNodeHolds(rid int32, src, dst *class) bool {
	r := e.rules[rid]
	if e.atoms[r.cons].kind == atomHostNode && !hosts(src.w, dst.w) {
		return false
	}
	if e.atoms[r.prov].kind == atomHostNode && !hosts(dst.w, src.w) {
		return false
	}
	return true
}

// hosts reports whether node runs pod.
func hosts(node, pod *inventory.Workload) bool {
	return node != nil && pod != nil && node.Kind == inventory.KindNode && pod.Kind == inventory.KindPod &&
		pod.Node != "" && pod.Node == node.Name && pod.Cluster == node.Cluster
}

// serviceConsumer reports whether a source belongs to a service: it is the
// service itself, or a pod of the service's namespace its selector picks.
func (e *Evaluator) serviceConsumer(ref string, c *class) bool {
	w := c.w
	if w == nil {
		return false
	}
	if w.Kind == inventory.KindService {
		return w.Namespace+"/"+w.Name == ref
	}
	svc := e.services[ref]
	if svc == nil || w.Kind != inventory.KindPod || w.Namespace != svc.Namespace || len(svc.Selector) == 0 {
		return false
	}
	for k, v := range svc.Selector {
		if w.Labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePorts turns named ports into numbers for one destination: for a
// service provider, the service port of that name; otherwise the
// destination pod's container port of that name (and protocol).
func resolvePorts(ps []PortRange, viaSvc bool, dst *inventory.Workload, svc *svcClass) []PortRange {
	out := make([]PortRange, 0, len(ps))
	for _, p := range ps {
		if p.Name == "" {
			out = append(out, p)
			continue
		}
		if viaSvc {
			if svc == nil {
				continue
			}
			for _, sp := range svc.w.Ports {
				if sp.Name == p.Name && protoIs(sp.Protocol, p.Proto) {
					out = append(out, PortRange{Proto: p.Proto, Lo: uint16(sp.Port), Hi: uint16(sp.Port)})
				}
			}
			continue
		}
		for _, n := range namedPorts(dst, p.Name, p.Proto) {
			out = append(out, PortRange{Proto: p.Proto, Lo: n, Hi: n})
		}
	}
	return out
}

func protoIs(s string, p Proto) bool {
	if p == ProtoAny {
		return true
	}
	if s == "" {
		return p == ProtoTCP
	}
	return strings.EqualFold(s, p.String())
}

// Within reports whether scope is ancestor or one of its descendants.
func (e *Evaluator) Within(scope, ancestor string) bool {
	if scope == "" {
		return false
	}
	i, ok := e.byName[scope]
	if !ok {
		return false
	}
	for ; i >= 0; i = e.scopes[i].parent {
		if e.scopes[i].name == ancestor {
			return true
		}
	}
	return false
}
