package flow

import (
	"encoding/binary"
	"hash/fnv"
	"sort"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// Resolver attributes IPs to inventory workloads at a given time. The
// inventory implements it from its history, so a flow is attributed to the
// pod that held the IP when the flow happened, not to whoever holds it now.
// Flows share the returned workload's Labels map and Owner, and the flow
// store recognises them by identity: a new version of a workload must come
// with new maps, never by changing returned ones in place.
type Resolver interface {
	// WorkloadAt returns the workload that held ip at t: a pod, a node (an
	// InternalIP), a service (its cluster IP) or a user-defined external
	// range.
	WorkloadAt(ip string, t time.Time) (*inventory.Workload, bool)
	// ServiceFor returns the service that ip:port (proto "tcp", "udp", ...)
	// belonged to at t: a cluster IP and service port, a node IP and node
	// port, or a backend endpoint IP and target port.
	ServiceFor(ip string, port uint16, proto string, t time.Time) (*inventory.Workload, bool)
}

// MaxRelated caps the relations kept on one flow: a conversation-mode VXLAN
// flow between two nodes carries every pod conversation between them.
const MaxRelated = 256

// Pipeline turns observations into flows: it merges the observations of
// the same flow made at several points (of one node or of several), relates
// flows through the NAT mappings and tunnels the agents report, and
// enriches both ends through a Resolver. It is not safe for concurrent use.
type Pipeline struct {
	// Window is how long a flow waits, after the last observation that
	// joined it arrived, for more observation points before it is emitted.
	// It must cover the agents' report period and delay (15 s summaries
	// in conversation mode).
	Window   time.Duration
	Resolver Resolver // nil: no enrichment

	pending map[Key][]*cluster
	// tunnels indexes tunnel clusters by the inner flows they carried.
	tunnels map[Key][]*cluster
	// natByOrig and natByPost relate a flow before NAT with the flow after.
	natByOrig map[Key][]natLink
	natByPost map[Key][]natLink
	natExpiry []natExpiry
	// natUsed is when a mapping last related flows: a long connection's
	// mapping (reported once, at NEW) lives as long as its flows keep
	// coming.
	natUsed map[[2]Key]time.Time
	// counter is, per conversation, the observation point whose new
	// connections a conversation-mode flow counts (see Add).
	counter map[Key]counterPoint
	// recent holds emitted flows for natTTL, so a related flow arriving
	// after its partner was emitted still links both ways: the partner is
	// emitted again (Emitted.Updates) with the new link.
	recent  map[Key][]*cluster
	updated map[*cluster]bool
}

// counterPoint is the point that counts a conversation's connections, and
// when it last did.
type counterPoint struct {
	node, iface string
	used        time.Time
}

type natLink struct {
	other  Key
	reason string
	// since is when the mapping was set up (NAT.Time; zero: unknown):
	// flows that ended before it are not of its connection.
	since time.Time
}

type natExpiry struct {
	at         time.Time
	orig, post Key
}

// cluster is a flow being assembled.
type cluster struct {
	id       string
	f        Flow
	arrived  time.Time // when the last observation joined
	created  time.Time // when the first did
	first    ObsRef    // the observation that started it, for the ID
	obs      []ObsRef
	inner    []Key // tunnel clusters: inner flows carried
	rel      map[*cluster]string
	emitted  bool
	resolved bool // ID fixed
	// emittedAt is when Flush emitted it (it stays in recent for natTTL).
	emittedAt time.Time
	// lateRel are links to flows no longer held (emitted long ago).
	lateRel []Related
	// prov is the flow as last materialized for Provisional; dirty says
	// it changed since.
	prov  *Flow
	dirty bool
}

// ObsRef names one agent record.
type ObsRef struct {
	Agent string
	Seq   uint64
}

// NewPipeline returns a pipeline with the given window and resolver.
func NewPipeline(window time.Duration, r Resolver) *Pipeline {
	return &Pipeline{
		Window:    window,
		Resolver:  r,
		pending:   map[Key][]*cluster{},
		tunnels:   map[Key][]*cluster{},
		natByOrig: map[Key][]natLink{},
		natByPost: map[Key][]natLink{},
		natUsed:   map[[2]Key]time.Time{},
		counter:   map[Key]counterPoint{},
		recent:    map[Key][]*cluster{},
		updated:   map[*cluster]bool{},
	}
}

// natTTL is how long a NAT mapping is kept after it arrived or last
// related flows.
func (p *Pipeline) natTTL() time.Duration { return 2*p.Window + time.Minute }

// Pending is the number of flows waiting for their window to close.
func (p *Pipeline) Pending() int {
	n := 0
	for _, cs := range p.pending {
		n += len(cs)
	}
	return n
}

// AddNAT records a conntrack mapping seen at arrival.
func (p *Pipeline) AddNAT(n NAT, arrival time.Time) {
	post := Tuple{Proto: n.Reply.Proto, SrcIP: n.Reply.DstIP, DstIP: n.Reply.SrcIP, SrcPort: n.Reply.DstPort, DstPort: n.Reply.SrcPort}
	if post.Proto == "" {
		post.Proto = n.Original.Proto
	}
	dnat := post.DstIP != n.Original.DstIP || post.DstPort != n.Original.DstPort
	snat := post.SrcIP != n.Original.SrcIP
	var reason string
	switch {
	case dnat && snat:
		reason = ReasonNodePort
	case dnat:
		reason = ReasonClusterIP
		// NodePort with externalTrafficPolicy: Local keeps the source.
		if p.Resolver != nil {
			if w, ok := p.Resolver.WorkloadAt(n.Original.DstIP, arrival); ok && w.Kind == inventory.KindNode {
				reason = ReasonNodePort
			}
		}
	case snat:
		reason = ReasonEgress
	default:
		return
	}
	for _, mode := range []string{ConversationMode, DetailedMode} {
		o, q := KeyOf(mode, n.Original), KeyOf(mode, post)
		if !hasLink(p.natByOrig[o], q) {
			p.natByOrig[o] = append(p.natByOrig[o], natLink{q, reason, n.Time})
			p.natByPost[q] = append(p.natByPost[q], natLink{o, reason, n.Time})
			p.natExpiry = append(p.natExpiry, natExpiry{arrival.Add(p.natTTL()), o, q})
		}
	}
}

func hasLink(ls []natLink, k Key) bool {
	for _, l := range ls {
		if l.other == k {
			return true
		}
	}
	return false
}

// Add merges one observation into the flow it belongs to, or starts one.
func (p *Pipeline) Add(o *Observation, arrival time.Time) {
	k := KeyOf(o.Mode, o.Tuple)
	ref := ObsRef{o.Agent, o.Seq}
	c := p.match(k, o)
	if c == nil {
		c = &cluster{first: ref, f: Flow{
			Mode: o.Mode, Proto: o.Tuple.Proto,
			Src:   Endpoint{IP: k.SrcIP, Port: k.SrcPort},
			Dst:   Endpoint{IP: k.DstIP, Port: k.DstPort},
			Start: o.Start, End: o.End,
		}}
		p.pending[k] = append(p.pending[k], c)
	}
	if c.arrived.IsZero() {
		c.created = arrival
	}
	c.arrived = arrival
	c.dirty = true
	c.obs = append(c.obs, ref)
	f := &c.f
	if o.Start.Before(f.Start) {
		f.Start = o.Start
	}
	if o.End.After(f.End) {
		f.End = o.End
	}
	f.FwdPackets = max(f.FwdPackets, o.FwdPackets)
	f.FwdBytes = max(f.FwdBytes, o.FwdBytes)
	f.RevPackets = max(f.RevPackets, o.RevPackets)
	f.RevBytes = max(f.RevBytes, o.RevBytes)
	if o.Mode == ConversationMode {
		// A conversation's records come per window from every point, in
		// windows not aligned between nodes, and a record's Conns also
		// counts connections carried over from earlier windows: the most
		// of any point, or the sum of Conns, would count a connection
		// several times. Each connection is new in exactly one window of
		// each point, so one point, the same for the whole conversation,
		// counts: the flow's Conns are that point's new connections, and
		// the sum over the conversation's flows is exact, across windows
		// and agent restarts.
		cp, ok := p.counter[k]
		if !ok || arrival.Sub(cp.used) > p.natTTL() {
			cp = counterPoint{node: o.Point.Node, iface: o.Point.Interface}
		}
		if cp.node == o.Point.Node && cp.iface == o.Point.Interface {
			cp.used = arrival
			f.Conns += o.NewConns
		}
		p.counter[k] = cp
	} else {
		f.Conns = max(f.Conns, o.Conns)
	}
	for _, fl := range o.Flags {
		if !contains(f.Flags, fl) {
			f.Flags = append(f.Flags, fl)
		}
	}
	f.Points = append(f.Points, o.Point)
	if o.Tunnel != nil {
		f.Tunnel = o.Tunnel.Type
		for _, t := range o.Tunnel.Inner {
			for _, mode := range []string{ConversationMode, DetailedMode} {
				ik := KeyOf(mode, t)
				if !containsKey(c.inner, ik) {
					c.inner = append(c.inner, ik)
					p.tunnels[ik] = append(p.tunnels[ik], c)
				}
			}
		}
	}
}

func containsKey(ks []Key, k Key) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// match finds the pending flow an observation belongs to: same key, not
// already seen at this point, overlapping in time (the most, if several).
func (p *Pipeline) match(k Key, o *Observation) *cluster {
	var best *cluster
	var bestOverlap time.Duration
	for _, c := range p.pending[k] {
		if seenAt(c.f.Points, o.Point) {
			continue
		}
		ov, ok := overlap(c.f.Start, c.f.End, o.Start, o.End)
		if ok && (best == nil || ov > bestOverlap) {
			best, bestOverlap = c, ov
		}
	}
	return best
}

func seenAt(ps []ObservationPoint, q ObservationPoint) bool {
	for _, p := range ps {
		if p.Node == q.Node && p.Interface == q.Interface {
			return true
		}
	}
	return false
}

// overlap returns how long [s1,e1] and [s2,e2] overlap, and whether they do:
// by a positive duration, or at all when one of them is an instant.
func overlap(s1, e1, s2, e2 time.Time) (time.Duration, bool) {
	s, e := s1, e1
	if s2.After(s) {
		s = s2
	}
	if e2.Before(e) {
		e = e2
	}
	d := e.Sub(s)
	if d > 0 {
		return d, true
	}
	return 0, d == 0 && (s1.Equal(e1) || s2.Equal(e2))
}

// Emitted is what Flush returns: flows ready to store and the agent records
// they were made of.
type Emitted struct {
	Flows []Flow
	// Ends are the workload versions the enrichment resolved, Ends[i] for
	// Flows[i] (zero without a Resolver): what live analysis decides with,
	// without resolving both ends again.
	Ends []Ends
	Obs  Seqs
	// Updates are flows emitted before, again with the links of related
	// flows that arrived after them: the store replaces them.
	Updates []Flow
}

// Flush emits the flows whose window has closed at now (all of them when
// all is set), related and enriched.
func (p *Pipeline) Flush(now time.Time, all bool) Emitted {
	var out []*cluster
	for _, cs := range p.pending {
		for _, c := range cs {
			if all || now.Sub(c.arrived) >= p.Window {
				out = append(out, c)
			}
		}
	}
	// Stable output order: by start, then first observation.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.f.Start.Equal(b.f.Start) {
			return a.f.Start.Before(b.f.Start)
		}
		if a.first.Agent != b.first.Agent {
			return a.first.Agent < b.first.Agent
		}
		return a.first.Seq < b.first.Seq
	})
	// Relate before leaving pending, so flows emitted together find each other.
	for _, c := range out {
		p.relate(c)
	}
	for _, c := range out {
		c.emitted, c.emittedAt = true, now
		k := c.f.Key()
		p.recent[k] = append(p.recent[k], c)
		delete(p.updated, c)
	}
	for k, cs := range p.pending {
		keep := cs[:0]
		for _, c := range cs {
			if !c.emitted {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 {
			delete(p.pending, k)
		} else {
			p.pending[k] = keep
		}
	}
	em := Emitted{Flows: make([]Flow, 0, len(out)), Ends: make([]Ends, 0, len(out)), Obs: Seqs{}}
	for _, c := range out {
		f, ends := p.materialize(c)
		em.Flows = append(em.Flows, f)
		em.Ends = append(em.Ends, ends)
		for _, r := range c.obs {
			em.Obs.Add(r.Agent, r.Seq)
		}
	}
	// Flows emitted earlier that a flow related since: again, with the
	// new links.
	for c := range p.updated {
		f, _ := p.materialize(c)
		em.Updates = append(em.Updates, f)
	}
	sort.Slice(em.Updates, func(i, j int) bool { return em.Updates[i].ID < em.Updates[j].ID })
	clear(p.updated)
	p.expireRecent(now, all)
	p.expireNAT(now, all)
	for k, cp := range p.counter {
		if now.Sub(cp.used) > p.natTTL() {
			delete(p.counter, k)
		}
	}
	return em
}

// expireRecent forgets the flows emitted more than natTTL ago.
func (p *Pipeline) expireRecent(now time.Time, all bool) {
	for k, cs := range p.recent {
		keep := cs[:0]
		for _, c := range cs {
			if !all && now.Sub(c.emittedAt) < p.natTTL() {
				keep = append(keep, c)
				continue
			}
			for _, ik := range c.inner {
				p.tunnels[ik] = removeCluster(p.tunnels[ik], c)
				if len(p.tunnels[ik]) == 0 {
					delete(p.tunnels, ik)
				}
			}
			// Partners still pending keep their link, not the pointer.
			for o := range c.rel {
				if o.rel != nil {
					if _, ok := o.rel[c]; ok && !o.emitted {
						o.lateRel = append(o.lateRel, Related{ID: c.id, Reason: o.rel[c]})
						delete(o.rel, c)
					}
				}
			}
			c.rel = nil
		}
		if len(keep) == 0 {
			delete(p.recent, k)
		} else {
			p.recent[k] = keep
		}
	}
}

// materialize returns c as a flow: its ID fixed, related, enriched; and the
// workload versions its ends resolved to.
func (p *Pipeline) materialize(c *cluster) (Flow, Ends) {
	p.fixID(c)
	f := c.f
	f.ID = c.id
	f.Flags = append([]string(nil), f.Flags...)
	f.Points = append([]ObservationPoint(nil), f.Points...)
	f.Replied = f.RevPackets > 0 || f.HasFlag(FlagSYNACK)
	for o, reason := range c.rel {
		p.fixID(o)
		f.Related = append(f.Related, Related{ID: o.id, Reason: reason})
	}
	f.Related = append(f.Related, c.lateRel...)
	sort.Slice(f.Related, func(i, j int) bool { return f.Related[i].ID < f.Related[j].ID })
	ends := p.enrich(&f)
	return f, ends
}

// Provisional returns the flows still waiting for their window to close,
// as they are now (related to the pending flows found so far, enriched):
// searchable before they are stored, with the IDs they will be stored
// under. A flow changed since the last call (more observation points,
// relations) is rebuilt; the others are returned as they were.
func (p *Pipeline) Provisional() []Flow {
	out, _ := p.provisional()
	return out
}

// provisional is Provisional with, for each flow, when its first
// observation arrived.
func (p *Pipeline) provisional() ([]Flow, []time.Time) {
	var out []Flow
	var created []time.Time
	for _, cs := range p.pending {
		for _, c := range cs {
			if c.dirty || c.prov == nil {
				p.relate(c)
			}
		}
	}
	for _, cs := range p.pending {
		for _, c := range cs {
			if c.dirty || c.prov == nil {
				f, _ := p.materialize(c)
				c.prov, c.dirty = &f, false
			}
			out = append(out, *c.prov)
			created = append(created, c.created)
		}
	}
	return out, created
}

func removeCluster(cs []*cluster, c *cluster) []*cluster {
	out := cs[:0]
	for _, x := range cs {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

func (p *Pipeline) expireNAT(now time.Time, all bool) {
	i := 0
	var again []natExpiry
	for ; i < len(p.natExpiry); i++ {
		e := p.natExpiry[i]
		if !all && e.at.After(now) {
			break
		}
		if used, ok := p.natUsed[[2]Key{e.orig, e.post}]; ok && !all && used.Add(p.natTTL()).After(now) {
			again = append(again, natExpiry{used.Add(p.natTTL()), e.orig, e.post})
			continue
		}
		delete(p.natUsed, [2]Key{e.orig, e.post})
		p.natByOrig[e.orig] = dropLink(p.natByOrig[e.orig], e.post)
		if len(p.natByOrig[e.orig]) == 0 {
			delete(p.natByOrig, e.orig)
		}
		p.natByPost[e.post] = dropLink(p.natByPost[e.post], e.orig)
		if len(p.natByPost[e.post]) == 0 {
			delete(p.natByPost, e.post)
		}
	}
	p.natExpiry = append(p.natExpiry[i:], again...)
	sort.Slice(p.natExpiry, func(a, b int) bool { return p.natExpiry[a].at.Before(p.natExpiry[b].at) })
}

func dropLink(ls []natLink, k Key) []natLink {
	out := ls[:0]
	for _, l := range ls {
		if l.other != k {
			out = append(out, l)
		}
	}
	return out
}

// fixID gives c its ID the first time it is needed: from its start so far
// and its first observation. A flow's start may still move earlier when
// later observations join, never later: stores look a flow up by the
// ID's time and a few minutes before it.
func (p *Pipeline) fixID(c *cluster) {
	if c.resolved {
		return
	}
	h := fnv.New64a()
	h.Write([]byte(c.first.Agent))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], c.first.Seq)
	h.Write(b[:])
	c.id = MakeID(c.f.Start, h.Sum64())
	c.resolved = true
}

// relate links c with the pending (or just emitted) flows NAT or a tunnel
// made of it, both ways.
func (p *Pipeline) relate(c *cluster) {
	k := c.f.Key()
	for _, l := range p.natByOrig[k] {
		if l.active(c) && p.link(c, p.closest(l.other, c), l.reason) {
			p.natUsed[[2]Key{k, l.other}] = c.arrived
		}
	}
	for _, l := range p.natByPost[k] {
		if l.active(c) && p.link(c, p.closest(l.other, c), l.reason) {
			p.natUsed[[2]Key{l.other, k}] = c.arrived
		}
	}
	reason := func(t *cluster) string {
		if t.f.Tunnel == "ipip" {
			return ReasonIPIP
		}
		return ReasonVXLAN
	}
	for _, ik := range c.inner {
		p.link(c, p.closest(ik, c), reason(c))
	}
	for _, t := range p.tunnels[k] {
		if _, ok := overlap(t.f.Start, t.f.End.Add(time.Second), c.f.Start, c.f.End); ok {
			p.link(c, t, reason(t))
		}
	}
}

// active reports whether c may be of the mapping's connection: it did not
// end before the mapping was set up (a second of slack: node clocks).
func (l natLink) active(c *cluster) bool {
	return l.since.IsZero() || !c.f.End.Before(l.since.Add(-time.Second))
}

// closest returns the flow with key k overlapping c the most, within a
// second of slack (clocks of different nodes): a pending one, or one
// emitted lately (the link then updates it).
func (p *Pipeline) closest(k Key, c *cluster) *cluster {
	var best *cluster
	var bestOv time.Duration
	for _, cs := range [2][]*cluster{p.pending[k], p.recent[k]} {
		for _, o := range cs {
			if o == c {
				continue
			}
			ov, ok := overlap(o.f.Start.Add(-time.Second), o.f.End.Add(time.Second), c.f.Start, c.f.End)
			if ok && (best == nil || ov > bestOv) {
				best, bestOv = o, ov
			}
		}
	}
	return best
}

func (p *Pipeline) link(a, b *cluster, reason string) bool {
	if b == nil || a == b {
		return false
	}
	for _, x := range [2][2]*cluster{{a, b}, {b, a}} {
		if x[0].rel == nil {
			x[0].rel = map[*cluster]string{}
		}
		if _, ok := x[0].rel[x[1]]; !ok && len(x[0].rel) < MaxRelated {
			x[0].rel[x[1]] = reason
			x[0].dirty = true
			if x[0].emitted {
				p.updated[x[0]] = true
			}
		}
	}
	return true
}

// Ends are the inventory's answers for one flow's ends at the flow's start,
// as the pipeline enriched it: the workload versions themselves, which the
// flow's Endpoints only name. Live analysis decides with them instead of
// resolving both ends again.
type Ends struct {
	// Src and Dst held the ends' addresses (nil: none did).
	Src, Dst *inventory.Workload
	// DstService is the service that Dst's address and port belonged to
	// (Resolver.ServiceFor: a cluster IP and service port, a node and its
	// node port, a backend and its target port); nil if none.
	DstService *inventory.Workload
}

// enrich attributes both ends of f at its start.
func (p *Pipeline) enrich(f *Flow) Ends {
	var e Ends
	if p.Resolver == nil {
		return e
	}
	e.Src, _ = p.enrichEnd(&f.Src, f.Proto, f.Start, false)
	e.Dst, e.DstService = p.enrichEnd(&f.Dst, f.Proto, f.Start, true)
	return e
}

func (p *Pipeline) enrichEnd(e *Endpoint, proto string, t time.Time, server bool) (w, svc *inventory.Workload) {
	if rw, ok := p.Resolver.WorkloadAt(e.IP, t); ok {
		w = rw
		e.Workload, e.Kind, e.Name, e.Namespace = w.ID, string(w.Kind), w.Name, w.Namespace
		e.Labels, e.Owner, e.Node = w.Labels, w.Owner, w.Node
		if w.Kind == inventory.KindService {
			e.Service = w.Namespace + "/" + w.Name
		}
	}
	if e.Port != 0 && (server || e.Service == "") {
		if s, ok := p.Resolver.ServiceFor(e.IP, e.Port, proto, t); ok {
			e.Service = s.Namespace + "/" + s.Name
			svc = s
		}
	}
	return w, svc
}
