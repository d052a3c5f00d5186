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
//  4. a bare pod by its name;
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
	"net/netip"
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
	// By says how the cluster was formed: pinned, owner, label, pod, nodes,
	// external.
	By      string   `json:"by"`
	Members []string `json:"members"` // inventory IDs seen in the window
	// Namespace and Labels (those every member pod carries, but the
	// pod-template hash) select the cluster's pods in a NetworkPolicy;
	// IPs are the addresses of node and external members.
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	IPs       []string          `json:"ips,omitempty"`
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

// Discover runs discovery over in.Flows for opts.Scope.
func Discover(in Input, opts Options, from, to time.Time) (*Result, error) {
	d, err := New(in, opts)
	if err != nil {
		return nil, err
	}
	for i := range in.Flows {
		d.Add(&in.Flows[i])
		if opts.Progress != nil && (i%4096 == 0 || i == len(in.Flows)-1) {
			opts.Progress(i+1, len(in.Flows))
		}
	}
	return d.Result(from, to), nil
}

// Discoverer accumulates flows into rules. Its result does not depend on
// the order flows are added in (first/last seen are extremes, samples the
// earliest by start and ID, everything sorted), so flows can stream from
// the store in any order and the output stays byte-identical. Memory grows
// with rules and clusters, not with flows. Not safe for concurrent use.
type Discoverer struct {
	opts       Options
	in         Input
	ev         *policy.Evaluator
	sess       *policy.Session
	pins       []pin
	rules      map[edgeKey]*Rule
	byWorkload map[*inventory.Workload]*Cluster // cluster of each workload version seen
	services   map[*inventory.Workload]string
	cidrs      map[netip.Addr]string
	samples    map[*Rule][]sample
	clusters   map[string]*Cluster
	namespaces map[string]bool
	catchAll   policy.Action
	stats      Stats
	subtree    map[string]bool // the scope and its descendants
}

type edgeKey struct{ consumer, provider string }

type sample struct {
	start int64
	id    string
}

// New prepares a discovery of opts.Scope over in's scope tree and
// inventory (in.Flows is not read).
func New(in Input, opts Options) (*Discoverer, error) {
	if opts.Scope == "" {
		return nil, fmt.Errorf("discovery: give the scope to discover")
	}
	found := false
	for _, s := range in.Set.Scopes {
		found = found || s.Name == opts.Scope
	}
	if !found {
		return nil, fmt.Errorf("discovery: scope %q: %w", opts.Scope, policy.ErrNotFound)
	}
	if opts.ExternalPrefix == 0 {
		opts.ExternalPrefix = 32
	}
	if opts.ExternalPrefix6 == 0 {
		opts.ExternalPrefix6 = 128
	}
	if opts.ExternalPrefix < 1 || opts.ExternalPrefix > 32 || opts.ExternalPrefix6 < 1 || opts.ExternalPrefix6 > 128 {
		return nil, fmt.Errorf("discovery: external prefix /%d (IPv4) or /%d (IPv6) out of range", opts.ExternalPrefix, opts.ExternalPrefix6)
	}
	if opts.Samples <= 0 {
		opts.Samples = 5
	}
	ev, err := policy.Compile(in.Set)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d := &Discoverer{opts: opts, in: in, ev: ev, sess: ev.NewSession(), rules: map[edgeKey]*Rule{}, byWorkload: map[*inventory.Workload]*Cluster{}, services: map[*inventory.Workload]string{}, cidrs: map[netip.Addr]string{}, samples: map[*Rule][]sample{},
		clusters: map[string]*Cluster{}, namespaces: map[string]bool{}, catchAll: policy.Deny}
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

// Result is what the flows added so far give, for the window [from, to].
func (d *Discoverer) Result(from, to time.Time) *Result {
	res := &Result{Scope: d.opts.Scope, From: from, To: to, CatchAll: d.catchAll, Stats: d.stats}
	for _, r := range d.rules {
		c := *r
		c.Ports = append([]string(nil), r.Ports...)
		sort.Strings(c.Ports)
		c.NodeIPs = append([]string(nil), r.NodeIPs...)
		sort.Strings(c.NodeIPs)
		if r.Backend != nil {
			b := *r.Backend
			b.Ports = append([]string(nil), b.Ports...)
			sort.Strings(b.Ports)
			c.Backend = &b
		}
		c.Samples = nil
		for _, s := range d.samples[r] {
			c.Samples = append(c.Samples, s.id)
		}
		res.Rules = append(res.Rules, c)
	}
	sort.Slice(res.Rules, func(i, j int) bool {
		a, b := &res.Rules[i], &res.Rules[j]
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		return a.Provider < b.Provider
	})
	for _, c := range d.clusters {
		x := *c
		x.Members = append([]string(nil), c.Members...)
		sort.Strings(x.Members)
		x.IPs = append([]string(nil), c.IPs...)
		sort.Strings(x.IPs)
		res.Clusters = append(res.Clusters, x)
	}
	sort.Slice(res.Clusters, func(i, j int) bool { return res.Clusters[i].Name < res.Clusters[j].Name })
	for ns := range d.namespaces {
		res.Namespaces = append(res.Namespaces, ns)
	}
	sort.Strings(res.Namespaces)
	return res
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
	in, translated := analyze.Input(f, d.in.Resolver)
	if translated || d.natCopy(f, &in) {
		st.Translated++
		return
	}
	if d.opts.Exclude != nil && d.opts.Exclude.Match(f) {
		st.Excluded++
		return
	}
	consIn := d.inScope(in.Src)
	provIn := d.inScope(in.Dst)
	if w := in.Src.Workload; consIn && w != nil && w.Kind == inventory.KindPod {
		d.namespaces[w.Namespace] = true
	}
	if w := in.Dst.Workload; provIn && w != nil && w.Kind == inventory.KindPod {
		d.namespaces[w.Namespace] = true
	}
	if !provIn && in.Service != nil {
		// A node port: the service (and its backends) may be in the
		// scope while the node is not.
		provIn = d.inScope(policy.Peer{IP: in.Dst.IP, Workload: in.Service})
	}
	if !consIn && !provIn {
		st.OutOfScope++
		return
	}
	if d.coveredByParent(&in, consIn, provIn) {
		st.Covered++
		return
	}
	proto := strings.ToLower(f.Proto)
	r := Rule{}
	switch {
	case in.Service != nil:
		// Through a service: its cluster IP, or a node port.
		r.Provider = d.serviceEndpoint(in.Service)
		r.Kind = "service"
		if in.Dst.Workload != nil && in.Dst.Workload.Kind == inventory.KindNode {
			r.Kind = "nodeport"
			r.NodeIPs = append([]string(nil), in.Dst.Workload.IPs...)
		}
		r.Ports = []string{portString(proto, in.ServicePort)}
		r.Backend = &Backend{Namespace: in.Service.Namespace, Selector: in.Service.Selector}
		for _, sp := range in.Service.Ports {
			if uint16(sp.Port) == in.ServicePort && strings.EqualFold(sp.Protocol, proto) {
				r.Backend.Ports = []string{proto + "/" + sp.TargetPort}
			}
		}
	default:
		if ephemeral(in.Dst.Workload, in.Port) {
			st.Ephemeral++
			return
		}
		c, ok := d.cluster(in.Dst.Workload)
		if ok {
			r.Provider, r.ProviderCluster = c.Filter, c.Name
			r.Kind = "pod"
		} else {
			r.Provider = d.cidrEndpoint(in.Dst.IP)
			r.Kind = "external"
		}
		r.Ports = []string{portString(proto, in.Port)}
	}
	if c, ok := d.cluster(in.Src.Workload); ok {
		r.Consumer, r.ConsumerCluster = c.Filter, c.Name
		if c.By == "nodes" && r.Kind == "pod" {
			r.Kind = "probe"
		}
	} else if r.Kind == "nodeport" {
		r.Consumer = "any"
	} else {
		r.Consumer = d.cidrEndpoint(in.Src.IP)
		if r.Kind == "pod" || r.Kind == "service" {
			r.Kind = "ingress"
		}
	}
	r.Scope, r.Action, r.Class = d.opts.Scope, policy.Allow, policy.Default
	key := edgeKey{r.Consumer, r.Provider}
	have, ok := d.rules[key]
	if !ok {
		have = &r
		d.rules[key] = have
		have.FirstSeen, have.LastSeen = f.Start, f.End
	}
	for _, ip := range r.NodeIPs {
		if !contains(have.NodeIPs, ip) {
			have.NodeIPs = append(have.NodeIPs, ip)
		}
	}
	if !contains(have.Ports, r.Ports[0]) {
		have.Ports = append(have.Ports, r.Ports[0])
		if have.Backend != nil && r.Backend != nil {
			for _, p := range r.Backend.Ports {
				if !contains(have.Backend.Ports, p) {
					have.Backend.Ports = append(have.Backend.Ports, p)
				}
			}
		}
	}
	st.Used++
	have.Flows++
	have.Conns += f.Conns
	have.Bytes += f.Bytes()
	if f.Start.Before(have.FirstSeen) {
		have.FirstSeen = f.Start
	}
	if end := f.End; end.After(have.LastSeen) {
		have.LastSeen = end
	}
	d.sample(have, f)
}

// sample keeps the rule's earliest flows by (start, ID).
func (d *Discoverer) sample(r *Rule, f *flow.Flow) {
	ss := d.samples[r]
	x := sample{f.Start.UnixNano(), f.ID}
	i := sort.Search(len(ss), func(i int) bool {
		return ss[i].start > x.start || ss[i].start == x.start && ss[i].id >= x.id
	})
	if i < len(ss) && ss[i] == x || i >= d.opts.Samples {
		return
	}
	ss = append(ss, sample{})
	copy(ss[i+1:], ss[i:])
	ss[i] = x
	if len(ss) > d.opts.Samples {
		ss = ss[:d.opts.Samples]
	}
	d.samples[r] = ss
}

// natCopy reports the post-NAT copy of a node-port connection (the flow
// to the backend pod, from the node's address after SNAT, whichever
// address of the node that is): the connection is decided on the flow to
// the node port.
func (d *Discoverer) natCopy(f *flow.Flow, in *policy.Flow) bool {
	if in.Dst.Workload == nil || in.Dst.Workload.Kind != inventory.KindPod {
		return false
	}
	for _, rel := range f.Related {
		if rel.Reason == flow.ReasonNodePort {
			return true
		}
	}
	return false
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
func (d *Discoverer) coveredByParent(in *policy.Flow, consIn, provIn bool) bool {
	dec := d.sess.Evaluate(in)
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

// cluster returns the cluster of a workload (false: none, an address no
// workload holds, or a service).
func (d *Discoverer) cluster(w *inventory.Workload) (*Cluster, bool) {
	if w == nil || w.Kind == inventory.KindService {
		return nil, false
	}
	if c, ok := d.byWorkload[w]; ok {
		return c, true
	}
	c := d.clusterOf(w)
	d.byWorkload[w] = c
	d.member(c, w)
	return c, true
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
	base := "cluster = " + q(w.Cluster) + " and namespace = " + q(w.Namespace)
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
	return d.named(w.Namespace+"."+w.Name, base+" and name = "+q(w.Name), "pod")
}

func (d *Discoverer) named(name, f, by string) *Cluster {
	c, ok := d.clusters[name]
	if !ok {
		c = &Cluster{Name: name, Filter: f, By: by}
		d.clusters[name] = c
	}
	return c
}

func (d *Discoverer) member(c *Cluster, w *inventory.Workload) {
	if w == nil || contains(c.Members, w.ID) {
		return
	}
	c.Members = append(c.Members, w.ID)
	if w.Kind != inventory.KindPod {
		for _, ip := range w.IPs {
			if !contains(c.IPs, ip) {
				c.IPs = append(c.IPs, ip)
			}
		}
		return
	}
	c.Namespace = w.Namespace
	if len(c.Members) == 1 {
		c.Labels = map[string]string{}
		for k, v := range w.Labels {
			if k != "pod-template-hash" && k != "controller-revision-hash" && k != "pod-template-generation" {
				c.Labels[k] = v
			}
		}
		return
	}
	for k, v := range c.Labels {
		if w.Labels[k] != v {
			delete(c.Labels, k)
		}
	}
}

// serviceEndpoint is service:NAMESPACE/NAME, made once per service
// version.
func (d *Discoverer) serviceEndpoint(w *inventory.Workload) string {
	if s, ok := d.services[w]; ok {
		return s
	}
	s := "service:" + w.Namespace + "/" + w.Name
	d.services[w] = s
	return s
}

// cidrEndpoint is cidr:SUBNET for an address, made once per address.
func (d *Discoverer) cidrEndpoint(ip netip.Addr) string {
	if s, ok := d.cidrs[ip]; ok {
		return s
	}
	s := "cidr:" + d.subnet(ip)
	d.cidrs[ip] = s
	return s
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

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
