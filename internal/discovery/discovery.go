// Package discovery finds the policy a scope's observed traffic needs
// (application dependency mapping): from stored flows, resolved through
// the inventory at each flow's own time, to a minimal allow-list of
// intents, each explained by the flows that justify it.
//
// # Clusters
//
// Workloads are grouped into clusters, the consumers and providers of the
// rules:
//
//  1. a pinned cluster: a saved inventory filter (kind: InventoryFilter)
//     that matches the workload, the first by name; pinning or renaming a
//     cluster is saving such a filter, and later runs respect it;
//  2. a pod's Kubernetes owner (Deployment, StatefulSet, DaemonSet,
//     CronJob, Job, ReplicaSet) in its namespace — a replaced pod (new
//     name, new IP) stays in its cluster;
//  3. a pod's app label (app, else app.kubernetes.io/name) in its namespace;
//  4. pods with neither (bare pods) by communication similarity: those of
//     a namespace with the same peers on the same ports form one cluster
//     (see similar.go); a bare pod like no other stays alone, by its name;
//  5. the cluster's nodes, one cluster per Kubernetes cluster;
//  6. a user-defined external workload by its name.
//
// # Rules
//
// One intent per (consumer, provider) edge, with every port seen on it.
// A provider is a service (service:NAMESPACE/NAME, its service port) when
// the connection went through its cluster IP or a node port, a cluster
// otherwise, and for addresses no workload holds the narrowest subnet seen
// (a /32 or /128, or wider with Options.ExternalPrefix). Consumers that no
// workload holds are a subnet likewise, except towards a node port, where
// they are `any` (the internet, as in the reference material's example).
// Only flows that were answered (replied) count; the node-address copies
// of SNAT and the outer flows of tunnels are decided with their originals
// and make no rule; ports in the ephemeral range that no container, service
// or node port declares never become rules; flows matching Options.Exclude
// are ignored; a flow whose every side in the scope is already allowed by
// an ancestor's absolute intent is not repeated.
//
// The output is deterministic: the same flows and inventory give the same
// rules in the same order with the same samples.
package discovery

import (
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
)

// Options tune a discovery run.
type Options struct {
	// Scope is the scope whose policy is discovered.
	Scope string
	// Exclude drops the flows it matches (a flow filter).
	Exclude *filter.Filter
	// ExternalPrefix widens IPv4 addresses no workload holds to this
	// prefix length (default 32); IPv6 addresses keep /128 unless
	// ExternalPrefix6 says otherwise.
	ExternalPrefix, ExternalPrefix6 int
	// Pins are saved filters that name clusters (kind: InventoryFilter).
	Pins []policy.NamedFilter
	// Samples is the number of flow IDs kept per rule (default 5).
	Samples int
	// Progress, when set, is called with the share of flows processed.
	Progress func(done, total int)
}

// Input is what a run reads: the flows of the window and the inventory
// history to resolve their ends, and the scope tree with the versions in
// force (for membership and the ancestors' absolute intents).
type Input struct {
	Flows    []flow.Flow
	Resolver flow.Resolver
	Set      policy.Set
}

// Cluster is a group of workloads that acts as one consumer or provider.
type Cluster struct {
	Name   string `json:"name"`
	Filter string `json:"filter"`
	// By says how the cluster was formed: pinned, owner, label,
	// similarity, pod, nodes, external, workload.
	By      string   `json:"by"`
	Members []string `json:"members"` // inventory IDs seen in the window
	// Why explains a similarity cluster: the peers and ports its pods
	// share.
	Why string `json:"why,omitempty"`
	// Namespace and Labels (those every member pod carries, but the
	// pod-template hash) select the cluster's pods in a NetworkPolicy;
	// IPs are the addresses of node and external members.
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	IPs       []string          `json:"ips,omitempty"`

	hasPods bool // Namespace and Labels are set
	nsMixed bool // pods of several namespaces (a pin): no Namespace
	// cluster and podName of a bare pod's cluster (By pod).
	cluster, podName string
}

// Rule is one discovered intent and the evidence for it.
type Rule struct {
	policy.Policy
	ConsumerCluster string    `json:"consumerCluster,omitempty"`
	ProviderCluster string    `json:"providerCluster,omitempty"`
	Kind            string    `json:"kind"` // pod, service, nodeport, probe, external, ingress
	Flows           uint64    `json:"flows"`
	Conns           uint64    `json:"conns"`
	Bytes           uint64    `json:"bytes"`
	FirstSeen       time.Time `json:"firstSeen"`
	LastSeen        time.Time `json:"lastSeen"`
	Samples         []string  `json:"samples"`
	// Backend is, for a service provider, the pods behind it and their
	// ports (what a NetworkPolicy sees after DNAT).
	Backend *Backend `json:"backend,omitempty"`
	// NodeIPs are, for a node-port rule, the nodes' addresses: the
	// source its backends see after SNAT.
	NodeIPs []string `json:"nodeIPs,omitempty"`
}

// Backend is a service's pods: its namespace, its selector, and the
// target ports (numbers or container port names) of the ports used.
type Backend struct {
	Namespace string            `json:"namespace"`
	Selector  map[string]string `json:"selector"`
	Ports     []string          `json:"ports"`
}

// Edge is the (consumer, provider) pair of a rule.
func (r *Rule) Edge() string { return r.Consumer + " → " + r.Provider }

// Result is a discovery run's outcome.
type Result struct {
	Scope    string    `json:"scope"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Clusters []Cluster `json:"clusters"`
	Rules    []Rule    `json:"rules"`
	// Counts of the flows read and why those not used were left out.
	Stats Stats `json:"stats"`
	// CatchAll is the scope's catch-all (what the rules are exceptions to).
	CatchAll policy.Action `json:"catchAll"`
	// Namespaces are those of the scope's pods seen in the window.
	Namespaces []string `json:"namespaces,omitempty"`
	// Diff against the scope's newest version, when there is one.
	Diff *Diff `json:"diff,omitempty"`
}

// Stats counts what happened to the flows read.
type Stats struct {
	Read       int `json:"read"`
	Used       int `json:"used"`
	OutOfScope int `json:"outOfScope"`
	NotReplied int `json:"notReplied"`
	Translated int `json:"translated"`
	Excluded   int `json:"excluded"`
	Ephemeral  int `json:"ephemeral"`
	Covered    int `json:"coveredByParent"`
}

// Diff compares discovered edges with a version's intents.
type Diff struct {
	Version string   `json:"version"`
	New     []string `json:"new"`     // discovered, not in the version
	NotSeen []string `json:"notSeen"` // allowed by the version, not seen in the window
}

// Discover runs discovery over in.Flows for opts.Scope, on one
// Discoverer per core when the flows are many (the result is the same).
func Discover(in Input, opts Options, from, to time.Time) (*Result, error) {
	workers := 1
	if len(in.Flows) >= 1<<16 {
		workers = runtime.GOMAXPROCS(0)
	}
	p, err := NewParallel(in, opts, workers)
	if err != nil {
		return nil, err
	}
	for i := range in.Flows {
		p.Add(&in.Flows[i])
		if opts.Progress != nil && (i%4096 == 0 || i == len(in.Flows)-1) {
			opts.Progress(i+1, len(in.Flows))
		}
	}
	return p.Result(from, to), nil
}

// Discoverer accumulates flows into rules. Its result does not depend on
// the order flows are added in (first/last seen are extremes, samples the
// earliest by start and ID, clusters and ports are sets, everything
// sorted), so flows can stream from the store in any order, and several
// Discoverers fed disjoint parts of the flows and merged give exactly the
// result of one fed them all. Memory grows with rules, clusters and
// addresses, not with flows. Not safe for concurrent use.
//
// Per flow it does no inventory lookup and no allocation in the common
// case: each address is resolved once per interval over which the
// inventory's answer holds (inventory.LookupSpan), and what the answer
// means to discovery (scope membership, cluster, endpoint) is kept with
// it; edges are keyed by interned endpoint numbers.
type Discoverer struct {
	opts     Options
	in       Input
	ev       *policy.Evaluator
	sess     *policy.Session
	pins     []pin
	catchAll policy.Action
	stats    Stats
	subtree  map[string]bool // the scope and its descendants
	// needCover: some version has an absolute ALLOW, so a flow may be
	// covered by a parent's (evaluated per flow only then).
	needCover bool
	// until caps the answers of open leases and latest versions (the
	// inventory as of New; later versions may end them).
	until int64

	peers      map[string]*peerEntry // by textual address
	eps        []string              // interned endpoints (consumer/provider texts); 0 is unused
	epID       map[string]uint32
	epCluster  []*Cluster // the cluster of each endpoint (nil: a service, a subnet, any)
	anyEp      uint32
	services   map[*inventory.Workload]uint32 // endpoint of each service version seen
	protos     []string                       // protocol names by number
	protoID    map[string]uint32
	edges      map[uint64]*edge
	byWorkload map[*inventory.Workload]*Cluster // cluster of each workload version seen
	clusters   map[string]*Cluster              // by filter
	namespaces map[string]bool
	merged     []*Discoverer
}

// peerEntry is one address resolved for an interval [lo, hi) of flow
// start times, and what the answer means to discovery.
type peerEntry struct {
	lo, hi  int64
	p       policy.Peer
	inScope bool
	nsSeen  bool
	cluster *Cluster
	ep      uint32 // the cluster's endpoint, else the address's subnet
	svcEp   uint32 // a service's endpoint when the address is its cluster IP
}

// edge is one (consumer, provider) pair and its evidence.
type edge struct {
	cons, prov   uint32
	kind         string // pod, service, probe, external, ingress
	nodePort     bool   // some flow came through a node port
	ports        []uint32
	portSet      map[uint32]bool // ports, when they are many
	lastPort     uint32
	svcPorts     []svcPort // service versions and ports (the backends' target ports)
	nodes        []*inventory.Workload
	flows, conns uint64
	bytes        uint64
	first, last  time.Time
	samples      []sample
}

type svcPort struct {
	svc  *inventory.Workload
	port uint32
}

type sample struct {
	start int64
	id    string
}

// spanResolver is a resolver that tells how long its answer holds
// (*inventory.Inventory).
type spanResolver interface {
	LookupSpan(ip netip.Addr, t time.Time) (w *inventory.Workload, ok bool, from, to time.Time)
}

// New prepares a discovery of opts.Scope over in's scope tree and
// inventory (in.Flows is not read).
func New(in Input, opts Options) (*Discoverer, error) {
	opts, err := checkOptions(in, opts)
	if err != nil {
		return nil, err
	}
	ev, err := policy.Compile(in.Set)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return newDiscoverer(in, opts, ev)
}

func checkOptions(in Input, opts Options) (Options, error) {
	if opts.Scope == "" {
		return opts, fmt.Errorf("discovery: give the scope to discover")
	}
	found := false
	for _, s := range in.Set.Scopes {
		found = found || s.Name == opts.Scope
	}
	if !found {
		return opts, fmt.Errorf("discovery: scope %q: %w", opts.Scope, policy.ErrNotFound)
	}
	if opts.ExternalPrefix == 0 {
		opts.ExternalPrefix = 32
	}
	if opts.ExternalPrefix6 == 0 {
		opts.ExternalPrefix6 = 128
	}
	if opts.ExternalPrefix < 1 || opts.ExternalPrefix > 32 || opts.ExternalPrefix6 < 1 || opts.ExternalPrefix6 > 128 {
		return opts, fmt.Errorf("discovery: external prefix /%d (IPv4) or /%d (IPv6) out of range", opts.ExternalPrefix, opts.ExternalPrefix6)
	}
	if opts.Samples <= 0 {
		opts.Samples = 5
	}
	return opts, nil
}

func newDiscoverer(in Input, opts Options, ev *policy.Evaluator) (*Discoverer, error) {
	d := &Discoverer{opts: opts, in: in, ev: ev, sess: ev.NewSession(), catchAll: policy.Deny, until: time.Now().UnixNano(),
		peers: map[string]*peerEntry{}, eps: []string{""}, epID: map[string]uint32{}, epCluster: []*Cluster{nil},
		services: map[*inventory.Workload]uint32{}, protoID: map[string]uint32{}, edges: map[uint64]*edge{},
		byWorkload: map[*inventory.Workload]*Cluster{}, clusters: map[string]*Cluster{}, namespaces: map[string]bool{}}
	for _, p := range []string{"", "tcp", "udp", "sctp"} {
		d.proto(p)
	}
	d.anyEp = d.endpoint("any", nil)
	for _, sc := range in.Set.Scopes {
		if sc.Name == opts.Scope && sc.CatchAll != policy.NoAction {
			d.catchAll = sc.CatchAll
		}
	}
	d.subtree = map[string]bool{opts.Scope: true}
	for grew := true; grew; {
		grew = false
		for _, sc := range in.Set.Scopes {
			if d.subtree[sc.Parent] && !d.subtree[sc.Name] {
				d.subtree[sc.Name], grew = true, true
			}
		}
	}
	if v := in.Set.Versions[opts.Scope]; v != nil && v.CatchAll != policy.NoAction {
		d.catchAll = v.CatchAll
	}
	for name, v := range in.Set.Versions {
		if v == nil || name == opts.Scope {
			continue
		}
		for _, p := range v.Policies {
			d.needCover = d.needCover || p.Action == policy.Allow && p.Class == policy.Absolute
		}
	}
	for _, p := range opts.Pins {
		f, err := filter.Parse(p.Filter, inventory.Schema)
		if err != nil {
			return nil, fmt.Errorf("discovery: pinned cluster %s: %w", p.Name, err)
		}
		d.pins = append(d.pins, pin{p, f})
	}
	sort.Slice(d.pins, func(i, j int) bool { return d.pins[i].Name < d.pins[j].Name })
	return d, nil
}

type pin struct {
	policy.NamedFilter
	f *filter.Filter
}

// ephemeralLo is the start of Linux's default ephemeral port range.
const ephemeralLo = 32768

// Add takes one flow into account.
func (d *Discoverer) Add(f *flow.Flow) {
	st := &d.stats
	st.Read++
	if !f.Replied {
		st.NotReplied++
		return
	}
	src, dst, svc, svcPortN, translated := d.resolve(f)
	if translated {
		st.Translated++
		return
	}
	dw := dst.p.Workload
	if d.opts.Exclude != nil && d.opts.Exclude.Match(f) {
		st.Excluded++
		return
	}
	consIn, provIn := src.inScope, dst.inScope
	if consIn && !src.nsSeen {
		d.seenNamespace(src)
	}
	if provIn && !dst.nsSeen {
		d.seenNamespace(dst)
	}
	if !provIn && svc != nil {
		// A node port: the service (and its backends) may be in the
		// scope while the node is not.
		provIn = d.inScope(policy.Peer{IP: dst.p.IP, Workload: svc})
	}
	if !consIn && !provIn {
		st.OutOfScope++
		return
	}
	pid := d.proto(f.Proto)
	if d.needCover && d.coveredByParent(f, src, dst, svc, svcPortN, consIn, provIn) {
		st.Covered++
		return
	}
	var prov uint32
	var kind string
	var port uint16
	nodePort := false
	switch {
	case svc != nil:
		// Through a service: its cluster IP, or a node port.
		if svc == dw {
			if dst.svcEp == 0 {
				dst.svcEp = d.serviceEndpoint(svc)
			}
			prov = dst.svcEp
		} else {
			prov = d.serviceEndpoint(svc)
		}
		kind, port = "service", svcPortN
		nodePort = dw != nil && dw.Kind == inventory.KindNode
	default:
		if ephemeral(dw, f.Dst.Port) {
			st.Ephemeral++
			return
		}
		port = f.Dst.Port
		d.use(dst)
		if dst.cluster != nil {
			prov, kind = dst.ep, "pod"
		} else {
			prov, kind = dst.ep, "external"
		}
	}
	var cons uint32
	d.use(src)
	switch {
	case src.cluster != nil:
		cons = src.ep
		if src.cluster.By == "nodes" && kind == "pod" {
			kind = "probe"
		}
	case nodePort:
		cons = d.anyEp
	default:
		cons = src.ep
		if kind == "pod" || kind == "service" {
			kind = "ingress"
		}
	}
	key := uint64(cons)<<32 | uint64(prov)
	e := d.edges[key]
	if e == nil {
		e = &edge{cons: cons, prov: prov, kind: kind, first: f.Start, last: f.End, lastPort: math.MaxUint32}
		d.edges[key] = e
	}
	pk := portKey(pid, port)
	if pk != e.lastPort {
		e.lastPort = pk
		e.addPort(pk)
	}
	if svc != nil {
		sp := svcPort{svc, pk}
		if n := len(e.svcPorts); n == 0 || e.svcPorts[n-1] != sp {
			if !slices.Contains(e.svcPorts, sp) {
				e.svcPorts = append(e.svcPorts, sp)
			}
		}
	}
	if nodePort {
		e.nodePort = true
		if n := len(e.nodes); n == 0 || e.nodes[n-1] != dw {
			if !slices.Contains(e.nodes, dw) {
				e.nodes = append(e.nodes, dw)
			}
		}
	}
	st.Used++
	e.flows++
	e.conns += f.Conns
	e.bytes += f.Bytes()
	if f.Start.Before(e.first) {
		e.first = f.Start
	}
	if f.End.After(e.last) {
		e.last = f.End
	}
	e.sample(sample{f.Start.UnixNano(), f.ID}, d.opts.Samples)
}

// addPort adds a port to the edge's set (a map once the set is large: a
// port scan must not make each flow walk thousands of ports).
func (e *edge) addPort(pk uint32) {
	if e.portSet != nil {
		if !e.portSet[pk] {
			e.portSet[pk] = true
			e.ports = append(e.ports, pk)
		}
		return
	}
	if slices.Contains(e.ports, pk) {
		return
	}
	e.ports = append(e.ports, pk)
	if len(e.ports) > 32 {
		e.portSet = map[uint32]bool{}
		for _, p := range e.ports {
			e.portSet[p] = true
		}
	}
}

// sample keeps the edge's earliest flows by (start, ID).
func (e *edge) sample(x sample, max int) {
	ss := e.samples
	if n := len(ss); n == max && (x.start > ss[n-1].start || x.start == ss[n-1].start && x.id >= ss[n-1].id) {
		return // the common case: later than every sample kept
	}
	i := sort.Search(len(ss), func(i int) bool {
		return ss[i].start > x.start || ss[i].start == x.start && ss[i].id >= x.id
	})
	if i < len(ss) && ss[i] == x || i >= max {
		return
	}
	if ss == nil {
		ss = make([]sample, 0, max+1)
	}
	ss = append(ss, sample{})
	copy(ss[i+1:], ss[i:])
	ss[i] = x
	if len(ss) > max {
		ss = ss[:max]
	}
	e.samples = ss
}

// resolve is analyze.Input with the ends resolved through the entry
// cache: the flow's ends at its time, the service it went through (a
// cluster IP, a node port, or the DNAT'd flow to a backend) and its service
// port, and whether it is a copy decided with another flow: a tunnel's
// outer flow, a node's SNAT'd egress, or the post-NAT copy of a node-port
// connection (to the backend pod, from the node after SNAT), decided on
// the flow to the node port. TestResolveMatchesAnalysis holds it to
// analyze.Input.
func (d *Discoverer) resolve(f *flow.Flow) (src, dst *peerEntry, svc *inventory.Workload, svcPort uint16, translated bool) {
	t := f.Start.UnixNano()
	src, dst = d.peer(f.Src.IP, t), d.peer(f.Dst.IP, t)
	ends := flow.Ends{Src: src.p.Workload, Dst: dst.p.Workload}
	dw := ends.Dst
	dnat, nodePortRel := false, false
	for _, rel := range f.Related {
		dnat = dnat || rel.Reason == flow.ReasonClusterIP || rel.Reason == flow.ReasonNodePort
		nodePortRel = nodePortRel || rel.Reason == flow.ReasonNodePort
	}
	// The service behind the destination, when analysis would look for
	// one (analyze.Resolve), but for a cluster IP, which is the service.
	if f.Dst.Port != 0 && (dw != nil && dw.Kind == inventory.KindNode || f.Dst.Service != "" && dnat && (dw == nil || dw.Kind != inventory.KindService)) {
		ends.DstService, _ = d.in.Resolver.ServiceFor(f.Dst.IP, f.Dst.Port, f.Proto, f.Start)
	}
	in, translated := analyze.InputResolved(f, ends)
	if nodePortRel && dw != nil && dw.Kind == inventory.KindPod {
		translated = true
	}
	return src, dst, in.Service, in.ServicePort, translated
}

// peer resolves a textual address at t (unix ns) through the entry cache.
func (d *Discoverer) peer(ip string, t int64) *peerEntry {
	e := d.peers[ip]
	if e != nil && t >= e.lo && t < e.hi {
		return e
	}
	if e == nil {
		e = &peerEntry{}
		d.peers[ip] = e
	}
	*e = peerEntry{lo: t, hi: t + 1}
	if a, err := netip.ParseAddr(ip); err == nil {
		e.p.IP = a.Unmap()
	}
	if sr, ok := d.in.Resolver.(spanResolver); ok && e.p.IP.IsValid() {
		w, ok, from, to := sr.LookupSpan(e.p.IP, time.Unix(0, t))
		if ok {
			e.p.Workload = w
		}
		e.lo, e.hi = math.MinInt64, d.until
		if !from.IsZero() {
			e.lo = from.UnixNano()
		}
		if !to.IsZero() && to.UnixNano() < e.hi {
			e.hi = to.UnixNano()
		}
		if t < e.lo || t >= e.hi {
			e.lo, e.hi = t, t+1 // a time past the inventory as of New
		}
	} else if d.in.Resolver != nil {
		if w, ok := d.in.Resolver.WorkloadAt(ip, time.Unix(0, t)); ok {
			e.p.Workload = w
		}
	}
	e.inScope = d.inScope(e.p)
	return e
}

// use makes the entry's endpoint (and cluster), on its first use in a
// rule: clusters are those of the rules' ends only.
func (d *Discoverer) use(e *peerEntry) {
	if e.ep != 0 {
		return
	}
	switch w := e.p.Workload; {
	case w != nil && w.Kind == inventory.KindService:
		e.ep = d.cidrEndpoint(e.p.IP)
	case w != nil:
		e.cluster = d.cluster(w)
		e.ep = d.endpoint(e.cluster.Filter, e.cluster)
	default:
		e.ep = d.cidrEndpoint(e.p.IP)
	}
}

func (d *Discoverer) seenNamespace(e *peerEntry) {
	e.nsSeen = true
	if w := e.p.Workload; w != nil && w.Kind == inventory.KindPod {
		d.namespaces[w.Namespace] = true
	}
}

func (d *Discoverer) inScope(p policy.Peer) bool {
	if p.Workload == nil && !p.IP.IsValid() {
		return false
	}
	// A workload is in the scope when its deciding (deepest) scope is
	// the scope or one of its descendants.
	return d.subtree[d.sess.DecidingScope(d.sess.Classify(p))]
}

// coveredByParent reports a flow that an ancestor's absolute intent already
// allows on every side the scope decides.
func (d *Discoverer) coveredByParent(f *flow.Flow, src, dst *peerEntry, svc *inventory.Workload, svcPort uint16, consIn, provIn bool) bool {
	in := policy.Flow{Src: src.p, Dst: dst.p, Port: f.Dst.Port, Service: svc, ServicePort: svcPort}
	in.Proto, _ = policy.ParseProto(f.Proto)
	dec := d.sess.Evaluate(&in)
	covered := func(sd policy.SideDecision) bool {
		ref := sd.Rule
		if sd.Action != policy.Allow || ref.CatchAll() || ref.Scope == d.opts.Scope {
			return false
		}
		v := d.in.Set.Versions[ref.Scope]
		return v != nil && ref.Index < len(v.Policies) && v.Policies[ref.Index].Class == policy.Absolute
	}
	if consIn && !covered(dec.Egress) {
		return false
	}
	if provIn && !covered(dec.Ingress) {
		return false
	}
	return true
}

// endpoint interns a consumer/provider text.
func (d *Discoverer) endpoint(s string, c *Cluster) uint32 {
	if id, ok := d.epID[s]; ok {
		return id
	}
	id := uint32(len(d.eps))
	d.eps = append(d.eps, s)
	d.epCluster = append(d.epCluster, c)
	d.epID[s] = id
	return id
}

// proto interns a protocol name (lower case).
func (d *Discoverer) proto(p string) uint32 {
	if id, ok := d.protoID[p]; ok {
		return id
	}
	l := strings.ToLower(p)
	id, ok := d.protoID[l]
	if !ok {
		id = uint32(len(d.protos))
		d.protos = append(d.protos, l)
		d.protoID[l] = id
	}
	d.protoID[p] = id
	return id
}

// portKey packs a protocol number and a port; the port only counts for
// protocols that have ports (as portString writes them).
func portKey(proto uint32, port uint16) uint32 {
	if proto == 0 || proto > 3 { // any, or not tcp, udp, sctp
		port = 0
	}
	return proto<<16 | uint32(port)
}

// cluster returns the cluster of a workload (not a service).
func (d *Discoverer) cluster(w *inventory.Workload) *Cluster {
	if c, ok := d.byWorkload[w]; ok {
		return c
	}
	c := d.clusterOf(w)
	d.byWorkload[w] = c
	c.member(w)
	return c
}

func (d *Discoverer) clusterOf(w *inventory.Workload) *Cluster {
	for _, p := range d.pins {
		if p.f.Match(inventory.Record{W: w}) {
			return d.named(p.Name, p.Filter, "pinned")
		}
	}
	q := strconv.Quote
	switch w.Kind {
	case inventory.KindNode:
		return d.named(w.Cluster+".nodes", "kind = node and cluster = "+q(w.Cluster), "nodes")
	case inventory.KindExternal:
		return d.named("external."+w.Name, "kind = external and name = "+q(w.Name), "external")
	case inventory.KindPod:
	default:
		return d.named(w.Namespace+"."+w.Name, "id = "+q(w.ID), "workload")
	}
	base := podBase(w.Cluster, w.Namespace)
	if o := w.Owner; o != nil && o.Name != "" {
		switch o.Kind {
		case "Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet":
			return d.named(w.Namespace+"."+o.Name, base+" and owner.kind = "+o.Kind+" and owner.name = "+q(o.Name), "owner")
		}
	}
	for _, k := range []string{"app", "app.kubernetes.io/name"} {
		if v := w.Labels[k]; v != "" {
			return d.named(w.Namespace+"."+v, base+" and label."+k+" = "+q(v), "label")
		}
	}
	c := d.named(w.Namespace+"."+w.Name, base+" and name = "+q(w.Name), "pod")
	c.cluster, c.podName = w.Cluster, w.Name
	return c
}

func podBase(cluster, ns string) string {
	return "cluster = " + strconv.Quote(cluster) + " and namespace = " + strconv.Quote(ns)
}

// named is the cluster of a filter (the filter, unique by construction,
// is the key; names are made unique in the result).
func (d *Discoverer) named(name, f, by string) *Cluster {
	c, ok := d.clusters[f]
	if !ok {
		c = &Cluster{Name: name, Filter: f, By: by}
		d.clusters[f] = c
	}
	return c
}

// serviceEndpoint is service:NAMESPACE/NAME, made once per service
// version.
func (d *Discoverer) serviceEndpoint(w *inventory.Workload) uint32 {
	if id, ok := d.services[w]; ok {
		return id
	}
	id := d.endpoint("service:"+w.Namespace+"/"+w.Name, nil)
	d.services[w] = id
	return id
}

// cidrEndpoint is cidr:SUBNET for an address.
func (d *Discoverer) cidrEndpoint(ip netip.Addr) uint32 {
	return d.endpoint("cidr:"+d.subnet(ip), nil)
}

// subnet is the narrowest subnet of ip the options allow.
func (d *Discoverer) subnet(ip netip.Addr) string {
	bits := d.opts.ExternalPrefix
	if ip.Is6() && !ip.Is4In6() {
		bits = d.opts.ExternalPrefix6
	}
	p, err := ip.Unmap().Prefix(bits)
	if err != nil {
		return ip.String() + "/32"
	}
	return p.String()
}

// ephemeral reports a destination port in the ephemeral range that the
// destination does not declare (a container port of a pod).
func ephemeral(w *inventory.Workload, port uint16) bool {
	if port < ephemeralLo {
		return false
	}
	if w != nil {
		for _, c := range w.Containers {
			for _, p := range c.Ports {
				if uint16(p.Port) == port {
					return false
				}
			}
		}
		for _, p := range w.Ports { // a service's ports
			if uint16(p.NodePort) == port || uint16(p.Port) == port {
				return false
			}
		}
	}
	return true
}

func portString(proto string, port uint16) string {
	switch proto {
	case "tcp", "udp", "sctp":
		if port > 0 {
			return proto + "/" + strconv.Itoa(int(port))
		}
	}
	if proto == "" {
		return "any"
	}
	return proto
}
