// Package compile turns the policy versions in force and the inventory at
// one moment into rule sets (internal/ruleset): one Bundle per node, with
// the node's own "concrete" rules and one "container" rule set per pod. It
// is pure: no kernel, no store, no clock.
//
// It follows the reference material case by case:
//
//  1. Pod → pod without a service: EGRESS on the consumer pod to the
//     provider's addresses, INGRESS on the provider pod from the
//     consumer's; no node rules (the CNI forwards).
//  2. Pod → ClusterIP service: consumer pod EGRESS to (service IP, service
//     port) — and (node IP, node port) for node ports; provider pod INGRESS
//     from the consumer to its own target port, generated because the DNAT
//     happens in the node and the pod sees its own address and target port.
//  3. Node → pod (health probes): node EGRESS to the pods' port; pod
//     INGRESS from the node's addresses (its IPs and the addresses it
//     sources pod traffic from: bridge gateway, tunnel address).
//  4. External → NodePort/LoadBalancer: node INGRESS any → node IP:node
//     port, in the node's FORWARD chain matched on the connection's
//     original destination (the "pre-routing allow": the DNAT has already
//     happened); provider pod INGRESS from any (the post-SNAT source is a
//     node address) to its target port.
//  5. Pod → external: consumer pod EGRESS to the external address and port;
//     no node rules.
//
// Every chain follows one side's precedence chain of the evaluator
// (policy.Evaluator.Chain) rule for rule, so a compiled namespace decides a
// connection the way the evaluator decides that side; address groups are
// IP sets shared by the rules that name the same endpoint, so rules grow
// with intents, not with pods × pods.
//
// Known differences with the evaluator, inherent in per-namespace
// iptables: a pod cannot tell traffic that reached it through a service
// from direct traffic to the same target port, so an intent to a service
// opens the target port to the consumer directly too; and for case 4 a pod
// sees any external client as a node address.
package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

// Input is what a compilation reads.
type Input struct {
	// Set holds the scopes and, per scope, the version in force.
	Set policy.Set
	// Enforced names the scopes in enforce mode; a pod or node is
	// programmed when its deciding scope is one of them.
	Enforced map[string]bool
	// Workloads is the inventory now (deleted workloads are skipped).
	Workloads []*inventory.Workload
	FailOpen  bool
	// NodeAddrs lists the addresses a node sources traffic to pods from;
	// default: its IPs, and the first two addresses of each of its pod
	// CIDRs (the bridge gateway and a flannel-style tunnel address).
	NodeAddrs func(*inventory.Workload) []string
}

// Stats sums up a compilation.
type Stats struct {
	Nodes, Pods, EnforcedPods int
	// Rules and set members summed over the enforced pods, and the
	// largest pod's.
	PodRules, PodMembers       int
	MaxPodRules, MaxPodMembers int
	NodeRules, NodeMembers     int
	DistinctSets               int
}

// Output is one bundle per node.
type Output struct {
	Bundles map[string]*ruleset.Bundle
	Stats   Stats
}

// peer is a workload as a member of address groups.
type peer struct {
	w     *inventory.Workload
	c     policy.Classified
	addrs []string // IPs, or CIDRs for external ranges
	net   bool     // addrs are CIDRs
}

type compiler struct {
	in       Input
	ev       *policy.Evaluator
	s        *policy.Session
	peers    []*peer
	byW      map[*inventory.Workload]*peer
	nodes    []*inventory.Workload
	services []*inventory.Workload
	sets     map[string]*ruleset.IPSet // by key
	nodeAll  []string                  // every node's addresses
	nodeIPs  []string                  // every node's InternalIPs
	chains   map[chainKey]*chain
	svcByRef map[string]*inventory.Workload // "NAMESPACE/NAME"
	// programmed are the peers that get rules: pods and nodes.
	programmed []*peer
	podByIP    map[string]*peer
	// podsByLabel: "NAMESPACE\x00KEY=VALUE" → pods.
	podsByLabel map[string][]*peer
	svcIn       *[]svcIngress // serviceIngresses, once
	// nodeByName and podsOn ("CLUSTER\x00NODE"): a pod's node and a
	// node's pods, for host-node.
	nodeByName map[string]*peer
	podsOn     map[string][]*peer
	// dnatRef: refusedAfterDNAT's result per egress rule list.
	dnatRef map[string][]dnatRefusal
}

type chainKey struct {
	scope string
	side  policy.Direction
}

type chain struct {
	rules    []policy.ChainRule
	catchAll policy.SideDecision
	// byPeer lists, per pod or node, the rules that concern it in chain
	// order: on egress those whose consumer holds it, on ingress those
	// whose provider does. Each distinct endpoint is tested once per peer,
	// not once per rule.
	byPeer map[*peer][]int
}

// chain returns the evaluator's chain for a deciding scope and side, once.
func (c *compiler) chain(scope string, side policy.Direction) *chain {
	k := chainKey{scope, side}
	if ch, ok := c.chains[k]; ok {
		return ch
	}
	ch := &chain{byPeer: map[*peer][]int{}}
	ch.rules, ch.catchAll, _ = c.ev.Chain(scope, side)
	groups := map[string][]int{}
	var keys []string
	for i := range ch.rules {
		r := &ch.rules[i]
		key := r.Consumer.String()
		if side == policy.Ingress {
			key = r.Provider.String()
		}
		if _, ok := groups[key]; !ok {
			keys = append(keys, key)
		}
		groups[key] = append(groups[key], i)
	}
	for _, key := range keys {
		idx := groups[key]
		r := &ch.rules[idx[0]]
		var svc *inventory.Workload
		if side == policy.Ingress && r.Provider.Kind == policy.EndpointService {
			if svc = c.svcByRef[r.Provider.Namespace+"/"+r.Provider.Name]; svc == nil {
				continue
			}
		}
		candidates := c.programmed
		if svc != nil {
			candidates = c.backends(svc)
		}
		for _, p := range candidates {
			var holds bool
			switch {
			case side == policy.Egress:
				// A host-node consumer is a node; which pods it reaches is
				// decided per node (hostNodeRules).
				holds = c.s.ConsumerHolds(r, p.c) || r.Consumer.Kind == policy.EndpointHostNode && p.w.Kind == inventory.KindNode
			case svc != nil:
				holds = c.s.ProviderHolds(r, p.c, svc)
			default:
				holds = c.s.ProviderHolds(r, p.c, nil) || r.Provider.Kind == policy.EndpointHostNode && p.w.Kind == inventory.KindNode
			}
			if holds {
				ch.byPeer[p] = append(ch.byPeer[p], idx...)
			}
		}
	}
	for p, idx := range ch.byPeer {
		sort.Ints(idx)
		ch.byPeer[p] = idx
	}
	c.chains[k] = ch
	return ch
}

// Compile compiles in. Errors name the scope, version and intent at fault.
func Compile(in Input) (*Output, error) {
	ev, err := policy.Compile(in.Set)
	if err != nil {
		return nil, err
	}
	if in.NodeAddrs == nil {
		in.NodeAddrs = DefaultNodeAddrs
	}
	c := &compiler{in: in, ev: ev, s: ev.NewSession(), byW: map[*inventory.Workload]*peer{}, sets: map[string]*ruleset.IPSet{}, chains: map[chainKey]*chain{}, svcByRef: map[string]*inventory.Workload{}, podByIP: map[string]*peer{}, podsByLabel: map[string][]*peer{},
		nodeByName: map[string]*peer{}, podsOn: map[string][]*peer{}}
	for _, s := range in.Set.Scopes {
		if in.Enforced[s.Name] && in.Set.Versions[s.Name] == nil {
			return nil, fmt.Errorf("scope %s: enforced without a version", s.Name)
		}
	}
	for name := range in.Enforced {
		if _, _, ok := ev.Chain(name, policy.Egress); !ok && in.Enforced[name] {
			return nil, fmt.Errorf("enforced scope %q does not exist", name)
		}
	}
	pods := map[string][]*peer{} // by node name
	for _, w := range in.Workloads {
		if w.Deleted != nil {
			continue
		}
		p := &peer{w: w}
		switch w.Kind {
		case inventory.KindPod:
			p.addrs = w.IPs
			if w.Node != "" {
				pods[w.Node] = append(pods[w.Node], p)
			}
		case inventory.KindNode:
			p.addrs = in.NodeAddrs(w)
			c.nodes = append(c.nodes, w)
			c.nodeAll = append(c.nodeAll, p.addrs...)
			c.nodeIPs = append(c.nodeIPs, w.IPs...)
		case inventory.KindService:
			if w.ClusterIP != "" && w.ClusterIP != "None" {
				p.addrs = []string{w.ClusterIP}
			}
			c.services = append(c.services, w)
			c.svcByRef[w.Namespace+"/"+w.Name] = w
		default:
			p.addrs, p.net = w.IPs, false
			if len(w.CIDRs) > 0 {
				p.addrs, p.net = append(append([]string(nil), w.IPs...), w.CIDRs...), true
			}
		}
		if len(p.addrs) == 0 {
			continue
		}
		p.c = c.s.Classify(policy.Peer{IP: firstAddr(p.addrs), Workload: w})
		c.peers = append(c.peers, p)
		if w.Kind == inventory.KindPod || w.Kind == inventory.KindNode {
			c.programmed = append(c.programmed, p)
		}
		if w.Kind == inventory.KindNode {
			c.nodeByName[nodeKey(w.Cluster, w.Name)] = p
		}
		if w.Kind == inventory.KindPod {
			if w.Node != "" {
				k := nodeKey(w.Cluster, w.Node)
				c.podsOn[k] = append(c.podsOn[k], p)
			}
			for _, ip := range w.IPs {
				c.podByIP[ip] = p
			}
			for k, v := range w.Labels {
				key := w.Namespace + "\x00" + k + "=" + v
				c.podsByLabel[key] = append(c.podsByLabel[key], p)
			}
		}
		c.byW[w] = p
	}
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].Name < c.nodes[j].Name })
	var versions []string
	for name, on := range in.Enforced {
		if on {
			versions = append(versions, name+"@"+in.Set.Versions[name].Name)
		}
	}
	sort.Strings(versions)
	out := &Output{Bundles: map[string]*ruleset.Bundle{}}
	for _, n := range c.nodes {
		b := &ruleset.Bundle{Node: n.Name, Versions: versions, FailOpen: in.FailOpen, Pods: []ruleset.Pod{}}
		if len(versions) > 0 {
			b.PodCIDRs = n.CIDRs
		}
		out.Stats.Nodes++
		if np := c.byW[n]; np != nil {
			if d := c.s.DecidingScope(np.c); in.Enforced[d] {
				b.Self = c.nodeRules(np, d)
			} else {
				b.Self = c.serviceOnlyRules(np)
			}
			if b.Self != nil {
				out.Stats.NodeRules += countRules(b.Self)
				out.Stats.NodeMembers += countMembers(b.Self)
			}
		}
		for _, p := range pods[n.Name] {
			out.Stats.Pods++
			rp := ruleset.Pod{ID: p.w.Namespace + "/" + p.w.Name, UID: p.w.UID, IPs: p.w.IPs}
			if d := c.s.DecidingScope(p.c); in.Enforced[d] {
				rp.Rules = c.podRules(p, d)
				out.Stats.EnforcedPods++
				r, m := countRules(rp.Rules), countMembers(rp.Rules)
				out.Stats.PodRules += r
				out.Stats.PodMembers += m
				out.Stats.MaxPodRules = max(out.Stats.MaxPodRules, r)
				out.Stats.MaxPodMembers = max(out.Stats.MaxPodMembers, m)
			}
			b.Pods = append(b.Pods, rp)
		}
		if len(versions) == 0 {
			b.Pods = []ruleset.Pod{} // nothing enforced: the agent removes everything
		}
		b.Seal()
		out.Bundles[n.Name] = b
	}
	out.Stats.DistinctSets = len(c.sets)
	return out, nil
}

func countRules(r *ruleset.Rules) int {
	n := len(r.Ingress.Rules) + len(r.Egress.Rules)
	if r.Forward != nil {
		n += len(r.Forward.Rules)
	}
	return n
}

func countMembers(r *ruleset.Rules) int {
	n := 0
	for _, s := range r.Sets {
		n += len(s.Members)
	}
	return n
}

// DefaultNodeAddrs is a node's IPs and its bridge addresses (the first two
// addresses of each of its pod CIDRs): the same addresses the inventory
// resolves to the node (inventory.BridgeAddrs).
func DefaultNodeAddrs(w *inventory.Workload) []string {
	out := append([]string(nil), w.IPs...)
	for _, a := range inventory.BridgeAddrs(w.CIDRs) {
		out = append(out, a.String())
	}
	return out
}

func firstAddr(xs []string) netip.Addr {
	for _, x := range xs {
		if a, err := netip.ParseAddr(x); err == nil {
			return a
		}
		if p, err := netip.ParsePrefix(x); err == nil {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

func verdictOf(a policy.Action) ruleset.Verdict {
	if a == policy.Allow {
		return ruleset.Allow
	}
	return ruleset.Reject
}

// rulesBuilder collects one namespace's rules and the sets they use.
type rulesBuilder struct {
	r    *ruleset.Rules
	used map[string]bool
}

func newRules(scope, version string) *rulesBuilder {
	return &rulesBuilder{r: &ruleset.Rules{Scope: scope, Version: version}, used: map[string]bool{}}
}

func (b *rulesBuilder) use(s *ruleset.IPSet) string {
	if !b.used[s.Name] {
		b.used[s.Name] = true
		b.r.Sets = append(b.r.Sets, *s)
	}
	return s.Name
}

func (c *compiler) version(scope string) string {
	if v := c.in.Set.Versions[scope]; v != nil {
		return v.Name
	}
	return ""
}

// podRules compiles pod p, whose deciding scope is d.
func (c *compiler) podRules(p *peer, d string) *ruleset.Rules {
	b := newRules(d, c.version(d))
	c.sideRules(b, d, p)
	b.r.Canonicalize()
	return b.r
}

// sideRules appends the egress and ingress rules of peer p (deciding
// scope d) and sets the chains' defaults.
func (c *compiler) sideRules(b *rulesBuilder, d string, p *peer) {
	eg := c.chain(d, policy.Egress)
	for _, i := range eg.byPeer[p] {
		c.egressRules(b, &b.r.Egress, &eg.rules[i], p)
	}
	b.r.Egress.Default = verdictOf(eg.catchAll.Action)
	in := c.chain(d, policy.Ingress)
	for _, i := range in.byPeer[p] {
		c.ingressRules(b, &b.r.Ingress, &in.rules[i], p)
	}
	b.r.Ingress.Default = verdictOf(in.catchAll.Action)
}

// nodeRules compiles node n's own rules (cases 3 and 4).
func (c *compiler) nodeRules(n *peer, d string) *ruleset.Rules {
	b := newRules(d, c.version(d))
	// Generated: the overlay between nodes (VXLAN) is the network itself.
	nodes := c.set("nodes", ruleset.HashIP, c.nodeIPs, "every node's IPs")
	overlay := ruleset.Rule{Verdict: ruleset.Allow, Proto: "udp", Ports: "4789", Set: b.use(nodes), Comment: "generated: overlay between nodes"}
	b.r.Egress.Rules = append(b.r.Egress.Rules, overlay)
	b.r.Ingress.Rules = append(b.r.Ingress.Rules, overlay)
	c.sideRules(b, d, n)
	in := c.chain(d, policy.Ingress)
	ingress, caI := in.rules, in.catchAll
	// Case 4: connections that arrived on one of this node's node ports
	// are forwarded after DNAT; the node decides them on their original
	// destination.
	fwd := &ruleset.Chain{Default: ruleset.Allow}
	for _, ip := range n.w.IPs {
		for _, svc := range c.services {
			for _, sp := range svc.Ports {
				if sp.NodePort == 0 {
					continue
				}
				proto := protoName(sp.Protocol)
				for i := range ingress {
					r := &ingress[i]
					if !c.s.ProviderHolds(r, n.c, svc) {
						continue
					}
					wire := uint16(sp.NodePort)
					if r.ViaService {
						wire = uint16(sp.Port)
					}
					if !r.AnyPort && !portsHold(policy.ResolvePorts(r, n.w, svc), proto, wire) {
						continue
					}
					for _, src := range c.sources(b, r, false, n) {
						src.OrigDst, src.OrigDstPort, src.Proto = ip, uint16(sp.NodePort), proto
						src.Verdict, src.Comment = verdictOf(r.Action), r.Ref.String()+" node port"
						fwd.Rules = append(fwd.Rules, src)
					}
				}
				fwd.Rules = append(fwd.Rules, ruleset.Rule{Verdict: verdictOf(caI.Action), Proto: proto, OrigDst: ip, OrigDstPort: uint16(sp.NodePort),
					Comment: caI.Rule.String() + " node port"})
			}
		}
		fwd.Rules = append(fwd.Rules, ruleset.Rule{Verdict: verdictOf(caI.Action), OrigDst: ip, DNATOnly: true, Comment: caI.Rule.String()})
	}
	b.r.Forward = fwd
	c.serviceIngress(b, n)
	c.egressAfterDNAT(b, n)
	b.r.Canonicalize()
	return b.r
}

// serviceOnlyRules is the rule set of a node outside every enforced
// scope: nothing of its own, only the ingress decisions of enforced
// services (nil when there are none).
func (c *compiler) serviceOnlyRules(n *peer) *ruleset.Rules {
	b := newRules("", "")
	b.r.Ingress.Default, b.r.Egress.Default = ruleset.Allow, ruleset.Allow
	b.r.Forward = &ruleset.Chain{Default: ruleset.Allow}
	scope := c.serviceIngress(b, n)
	if s := c.egressAfterDNAT(b, n); scope == "" {
		scope = s
	}
	if scope == "" {
		return nil
	}
	b.r.Scope, b.r.Version = scope, c.version(scope)
	b.r.Canonicalize()
	return b.r
}

// serviceIngress adds the ingress decision of every service whose own
// deciding scope is enforced, for connections to its cluster IP (the
// evaluator decides the flow to the service on the service's side too,
// not only the backend's flow). A pod client's node did the DNAT and its
// FORWARD chain sees the connection with its original destination, so
// there the service's ingress chain is compiled rule for rule, matched on
// (cluster IP, service port); for the node's own connections the decision
// is known at compile time and only a refusal is written, first in its
// egress. It returns the first scope that contributed ("": none).
func (c *compiler) serviceIngress(b *rulesBuilder, n *peer) string {
	first := ""
	var refuse []ruleset.Rule
	for _, si := range c.serviceIngresses() {
		in := c.chain(si.scope, policy.Ingress)
		var rules []ruleset.Rule
		self := ruleset.Verdict("")
		for _, i := range si.hold {
			r := &in.rules[i]
			if self == "" && c.s.ConsumerHolds(r, n.c) {
				self = verdictOf(r.Action)
			}
			for _, src := range c.sources(b, r, false, n) {
				src.Proto, src.OrigDst, src.OrigDstPort, src.DNATOnly = si.proto, si.svc.ClusterIP, si.port, true
				src.Verdict, src.Comment = verdictOf(r.Action), r.Ref.String()+" service "+si.svc.Namespace+"/"+si.svc.Name
				rules = append(rules, src)
			}
		}
		ca := verdictOf(in.catchAll.Action)
		if self == "" {
			self = ca
		}
		rules = append(rules, ruleset.Rule{Verdict: ca, Proto: si.proto, OrigDst: si.svc.ClusterIP, OrigDstPort: si.port, DNATOnly: true,
			Comment: in.catchAll.Rule.String() + " service " + si.svc.Namespace + "/" + si.svc.Name})
		b.r.Forward.Rules = append(b.r.Forward.Rules, rules...)
		if self != ruleset.Allow {
			refuse = append(refuse, ruleset.Rule{Verdict: self, Proto: si.proto, OrigDst: si.svc.ClusterIP, OrigDstPort: si.port, DNATOnly: true,
				Comment: "service " + si.svc.Namespace + "/" + si.svc.Name + " refuses this node"})
		}
		if first == "" {
			first = si.scope
		}
	}
	b.r.Egress.Rules = append(refuse, b.r.Egress.Rules...)
	return first
}

// svcIngress is one service port whose own ingress decision must be
// compiled: the rules of its scope's ingress chain that can decide the
// flow to it, in order.
type svcIngress struct {
	svc   *inventory.Workload
	scope string
	proto string
	port  uint16
	hold  []int
}

// serviceIngresses lists, once per compilation, the service ports of
// enforced scopes whose decision the backends' would not reproduce.
func (c *compiler) serviceIngresses() []svcIngress {
	if c.svcIn != nil {
		return *c.svcIn
	}
	out := []svcIngress{}
	c.svcIn = &out
	for _, svc := range c.services {
		sp := c.byW[svc]
		if sp == nil || svc.ClusterIP == "" || svc.ClusterIP == "None" {
			continue
		}
		d := c.s.DecidingScope(sp.c)
		if !c.in.Enforced[d] {
			continue
		}
		in := c.chain(d, policy.Ingress)
		for _, port := range svc.Ports {
			proto := protoName(port.Protocol)
			var hold []int // the rules that can decide the flow to the service
			for i := range in.rules {
				r := &in.rules[i]
				if !c.s.ProviderHolds(r, sp.c, svc) {
					continue
				}
				if !r.AnyPort && !portsHold(policy.ResolvePorts(r, svc, svc), proto, uint16(port.Port)) {
					continue
				}
				hold = append(hold, i)
			}
			if !c.serviceDiffers(svc, port, d, in, hold) {
				continue // the backends' own ingress decides the same
			}
			if len(hold) == 0 && in.catchAll.Action == policy.Allow {
				continue // the service's scope allows every client
			}
			out = append(out, svcIngress{svc: svc, scope: d, proto: proto, port: uint16(port.Port), hold: hold})
		}
	}
	return out
}

// serviceDiffers reports whether the service's own ingress decision for
// port can differ from what its backends' ingress decides on the
// DNAT-ed flow: a backend decided by another scope, or another sequence
// of applicable rules (hold, the service's) — e.g. an intent to the pods
// by label on their target port, which the service's flow on the service
// port does not match. When it cannot, nothing is compiled for it: the
// reference material's case 2 has no node rules.
func (c *compiler) serviceDiffers(svc *inventory.Workload, port inventory.ServicePort, d string, in *chain, hold []int) bool {
	proto := protoName(port.Protocol)
	for _, be := range c.backends(svc) {
		if c.s.DecidingScope(be.c) != d {
			return true
		}
		tps := targetPorts(svc, port, be.w)
		if len(tps) != 1 {
			return true
		}
		var seq []int
		for _, i := range in.byPeer[be] {
			r := &in.rules[i]
			if r.Provider.Kind == policy.EndpointService && !c.s.ProviderHolds(r, be.c, svc) {
				continue // a rule about another service of this pod
			}
			wire := tps[0]
			if r.ViaService {
				wire = uint16(port.Port)
			}
			if r.AnyPort || portsHold(policy.ResolvePorts(r, be.w, svc), proto, wire) {
				seq = append(seq, i)
			}
		}
		if !slices.Equal(seq, hold) {
			return true
		}
	}
	return false
}

func protoName(s string) string {
	if s == "" {
		return "tcp"
	}
	return strings.ToLower(s)
}

func portsHold(ps []policy.PortRange, proto string, port uint16) bool {
	p, _ := policy.ParseProto(proto)
	for _, r := range ps {
		if r.Matches(p, port) {
			return true
		}
	}
	return false
}

// portRules turns resolved port ranges into (proto, ports) pairs; one
// empty pair for "every protocol and port".
func portRules(ps []policy.PortRange, anyPort bool) [][2]string {
	if anyPort {
		return [][2]string{{"", ""}}
	}
	var out [][2]string
	for _, r := range ps {
		proto := ""
		if r.Proto != policy.ProtoAny {
			proto = r.Proto.String()
		}
		ports := ""
		if r.Lo != 0 {
			ports = strconv.Itoa(int(r.Lo))
			if r.Hi != r.Lo {
				ports += "-" + strconv.Itoa(int(r.Hi))
			}
		}
		out = append(out, [2]string{proto, ports})
	}
	return out
}

func hasNamed(ps []policy.PortRange) bool {
	for _, p := range ps {
		if p.Name != "" {
			return true
		}
	}
	return false
}

func numbered(ps []policy.PortRange) []policy.PortRange {
	var out []policy.PortRange
	for _, p := range ps {
		if p.Name == "" {
			out = append(out, p)
		}
	}
	return out
}

// egressRules appends the rules for intent r on the egress of src, its
// consumer: the peer is the destination, as the consumer addresses it.
func (c *compiler) egressRules(b *rulesBuilder, ch *ruleset.Chain, r *policy.ChainRule, src *peer) {
	if r.Consumer.Kind == policy.EndpointHostNode || r.Provider.Kind == policy.EndpointHostNode {
		c.hostNodeRules(b, ch, r, src, policy.Egress)
		return
	}
	v, ref := verdictOf(r.Action), r.Ref.String()
	add := func(ru ruleset.Rule) {
		ru.Verdict, ru.Comment = v, ref
		ch.Rules = append(ch.Rules, ru)
	}
	switch r.Provider.Kind {
	case policy.EndpointService:
		// Case 2: the service's addresses and ports as the consumer dials
		// them: cluster IP and service port, node IPs and node port.
		svc := c.service(r.Provider.Namespace, r.Provider.Name)
		var members []string
		if svc != nil {
			for _, sp := range svc.Ports {
				proto := protoName(sp.Protocol)
				if !r.AnyPort && !portsHold(policy.ResolvePorts(r, nil, svc), proto, uint16(sp.Port)) {
					continue
				}
				if svc.ClusterIP != "" && svc.ClusterIP != "None" {
					members = append(members, fmt.Sprintf("%s,%s:%d", svc.ClusterIP, proto, sp.Port))
				}
				if sp.NodePort != 0 {
					for _, ip := range c.nodeIPs {
						members = append(members, fmt.Sprintf("%s,%s:%d", ip, proto, sp.NodePort))
					}
				}
			}
		}
		s := c.set("dst-svc|"+r.Provider.String()+"|"+portKey(r), ruleset.HashIPPort, members, "service "+r.Provider.String())
		add(ruleset.Rule{Set: b.use(s)})
		return
	case policy.EndpointAny:
		if !hasNamed(r.Ports) {
			for _, pr := range portRules(r.Ports, r.AnyPort) {
				add(ruleset.Rule{Proto: pr[0], Ports: pr[1]})
			}
			return
		}
	case policy.EndpointCIDR:
		if !hasNamed(r.Ports) {
			for _, pr := range portRules(r.Ports, r.AnyPort) {
				add(ruleset.Rule{Proto: pr[0], Ports: pr[1], PeerCIDR: r.Provider.Prefix.String()})
			}
			return
		}
	}
	// Filters and scopes (and named ports of any provider): the addresses
	// of every workload the provider holds.
	if named := hasNamed(r.Ports); named {
		if nums := numbered(r.Ports); len(nums) > 0 {
			s := c.providerSet(r)
			for _, pr := range portRules(nums, false) {
				add(ruleset.Rule{Proto: pr[0], Ports: pr[1], Set: b.use(s)})
			}
		}
		add(ruleset.Rule{Set: b.use(c.namedPortSet(r))})
		return
	}
	s := c.providerSet(r)
	for _, pr := range portRules(r.Ports, r.AnyPort) {
		add(ruleset.Rule{Proto: pr[0], Ports: pr[1], Set: b.use(s)})
	}
}

// ingressRules appends the rules for intent r on the ingress of dst (a pod
// or a node) if r's provider holds dst.
func (c *compiler) ingressRules(b *rulesBuilder, ch *ruleset.Chain, r *policy.ChainRule, dst *peer) {
	if r.Provider.Kind == policy.EndpointHostNode {
		c.hostNodeRules(b, ch, r, dst, policy.Ingress)
		return
	}
	var ports []policy.PortRange
	anyPort := r.AnyPort
	nodePorts := false
	if r.Provider.Kind == policy.EndpointService {
		// Case 2 (and 4): dst is a backend of the service; the rule opens
		// the target ports behind the intent's service ports.
		svc := c.service(r.Provider.Namespace, r.Provider.Name)
		if svc == nil || !c.s.ProviderHolds(r, dst.c, svc) || !backs(svc, dst.w) {
			return
		}
		resolved := policy.ResolvePorts(r, dst.w, svc)
		anyPort = false
		for _, sp := range svc.Ports {
			proto := protoName(sp.Protocol)
			if !r.AnyPort && !portsHold(resolved, proto, uint16(sp.Port)) {
				continue
			}
			nodePorts = nodePorts || sp.NodePort != 0
			for _, tp := range targetPorts(svc, sp, dst.w) {
				pr, _ := policy.ParseProto(proto)
				ports = append(ports, policy.PortRange{Proto: pr, Lo: tp, Hi: tp})
			}
		}
		if len(ports) == 0 {
			return
		}
	} else {
		if !c.s.ProviderHolds(r, dst.c, nil) {
			return
		}
		if !anyPort {
			ports = policy.ResolvePorts(r, dst.w, nil)
			if len(ports) == 0 {
				return // only named ports, none on this destination
			}
		}
	}
	for _, src := range c.sources(b, r, nodePorts, dst) {
		for _, pr := range portRules(ports, anyPort) {
			ru := src
			ru.Proto, ru.Ports, ru.Verdict, ru.Comment = pr[0], pr[1], verdictOf(r.Action), r.Ref.String()
			ch.Rules = append(ch.Rules, ru)
		}
	}
}

// sources returns the source matches of r's consumer as seen by dst: one
// rule template per match (usually one; none when nothing can match).
// viaNodePort: the provider is reached on a node port, so the pod sees the
// client as a node address (case 4).
func (c *compiler) sources(b *rulesBuilder, r *policy.ChainRule, viaNodePort bool, dst *peer) []ruleset.Rule {
	switch r.Consumer.Kind {
	case policy.EndpointHostNode:
		// The node dst runs on, by its addresses (a node sources its
		// traffic to local pods from the bridge); nothing for a node or a
		// service, which no node hosts.
		n := c.nodeOf(dst)
		if n == nil {
			return nil
		}
		return []ruleset.Rule{{Set: b.use(c.hostNodeSet(n))}}
	case policy.EndpointAny:
		return []ruleset.Rule{{}}
	case policy.EndpointCIDR:
		if !viaNodePort {
			return []ruleset.Rule{{PeerCIDR: r.Consumer.Prefix.String()}}
		}
		members := append([]string{r.Consumer.Prefix.String()}, c.nodeAll...)
		s := c.set("src-cidr-np|"+r.Consumer.String(), ruleset.HashNet, members, r.Consumer.String()+" or a node (SNAT)")
		return []ruleset.Rule{{Set: b.use(s)}}
	}
	return []ruleset.Rule{{Set: b.use(c.consumerSet(r))}}
}

// nodeOf returns the node pod p runs on (nil: p is not a pod, or its node
// is unknown).
func (c *compiler) nodeOf(p *peer) *peer {
	if p == nil || p.w.Kind != inventory.KindPod || p.w.Node == "" {
		return nil
	}
	return c.nodeByName[nodeKey(p.w.Cluster, p.w.Node)]
}

// nodeKey is node name of cluster's key in nodeByName and podsOn.
func nodeKey(cluster, name string) string { return cluster + "\x00" + name }

// hostNodeSet is the set of node n's addresses, host-node in n's pods'
// rules.
func (c *compiler) hostNodeSet(n *peer) *ruleset.IPSet {
	return c.set("host-node|"+nodeKey(n.w.Cluster, n.w.Name), ruleset.HashIP, n.addrs, "host-node "+n.w.Name)
}

// hostNodeRules appends the rules for intent r, one of whose ends is
// host-node, on self's side (egress: self is the consumer; ingress: the
// provider). In a per-pod or per-node rule set the node is known, so
// host-node is exact: a pod's rules name its own node's addresses, a
// node's rules the pods it runs (those the intent's other end holds). A
// host-node consumer towards a service (the node's own egress to a
// cluster IP) matches nothing yet.
func (c *compiler) hostNodeRules(b *rulesBuilder, ch *ruleset.Chain, r *policy.ChainRule, self *peer, side policy.Direction) {
	selfIsHost := r.Provider.Kind == policy.EndpointHostNode
	if side == policy.Egress {
		selfIsHost = r.Consumer.Kind == policy.EndpointHostNode
	}
	var others []*peer
	if selfIsHost {
		if self.w.Kind != inventory.KindNode {
			return
		}
		for _, p := range c.podsOn[nodeKey(self.w.Cluster, self.w.Name)] {
			if side == policy.Egress && r.Provider.Kind != policy.EndpointService && c.s.ProviderHolds(r, p.c, nil) ||
				side == policy.Ingress && c.s.ConsumerHolds(r, p.c) {
				others = append(others, p)
			}
		}
	} else if n := c.nodeOf(self); n != nil {
		others = []*peer{n}
	}
	// Group the other ends by the ports the intent resolves to on the
	// destination (named ports differ per pod).
	type group struct {
		ports   [][2]string
		members []string
		names   []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, o := range others {
		dst := self
		if side == policy.Egress {
			dst = o
		}
		var ports []policy.PortRange
		if !r.AnyPort {
			if ports = policy.ResolvePorts(r, dst.w, nil); len(ports) == 0 {
				continue // only named ports, none there
			}
		}
		prs := portRules(ports, r.AnyPort)
		key := fmt.Sprint(prs)
		g := byKey[key]
		if g == nil {
			g = &group{ports: prs}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, o.addrs...)
		g.names = append(g.names, o.w.Name)
	}
	v, ref := verdictOf(r.Action), r.Ref.String()
	for _, g := range groups {
		var s *ruleset.IPSet
		if selfIsHost {
			other := r.Provider.String()
			if side == policy.Ingress {
				other = r.Consumer.String()
			}
			s = c.set("host-node-pods|"+fmt.Sprint(side)+"|"+self.w.Cluster+"\x00"+self.w.Name+"|"+other+"|"+fmt.Sprint(g.ports), ruleset.HashIP, g.members,
				"pods on "+self.w.Name+": "+other)
		} else {
			s = c.hostNodeSet(others[0])
		}
		for _, pr := range g.ports {
			ch.Rules = append(ch.Rules, ruleset.Rule{Verdict: v, Proto: pr[0], Ports: pr[1], Set: b.use(s), Comment: ref})
		}
	}
}

// backends returns the pods backing svc.
func (c *compiler) backends(svc *inventory.Workload) []*peer {
	var out []*peer
	if len(svc.Endpoints) > 0 {
		for _, e := range svc.Endpoints {
			if p := c.podByIP[e.IP]; p != nil {
				out = append(out, p)
			}
		}
		return out
	}
	// Without endpoint data: the pods the selector picks, starting from
	// those with the selector's first label.
	for k, v := range svc.Selector {
		for _, p := range c.podsByLabel[svc.Namespace+"\x00"+k+"="+v] {
			if backs(svc, p.w) {
				out = append(out, p)
			}
		}
		break
	}
	return out
}

// backs reports whether pod w is an endpoint of svc (or, without endpoint
// data, selected by it).
func backs(svc, w *inventory.Workload) bool {
	if w.Kind != inventory.KindPod {
		return false
	}
	if len(svc.Endpoints) > 0 {
		for _, e := range svc.Endpoints {
			for _, ip := range w.IPs {
				if e.IP == ip {
					return true
				}
			}
		}
		return false
	}
	if len(svc.Selector) == 0 || svc.Namespace != w.Namespace {
		return false
	}
	for k, v := range svc.Selector {
		if w.Labels[k] != v {
			return false
		}
	}
	return true
}

// targetPorts returns the port a service port reaches on pod w.
func targetPorts(svc *inventory.Workload, sp inventory.ServicePort, w *inventory.Workload) []uint16 {
	if sp.TargetPort == "" {
		return []uint16{uint16(sp.Port)}
	}
	if n, err := strconv.ParseUint(sp.TargetPort, 10, 16); err == nil {
		return []uint16{uint16(n)}
	}
	var out []uint16
	for _, ct := range w.Containers {
		for _, cp := range ct.Ports {
			if cp.Name == sp.TargetPort && strings.EqualFold(protoName(cp.Protocol), protoName(sp.Protocol)) {
				out = append(out, uint16(cp.Port))
			}
		}
	}
	return out
}

func (c *compiler) service(ns, name string) *inventory.Workload { return c.svcByRef[ns+"/"+name] }

func portKey(r *policy.ChainRule) string {
	if r.AnyPort {
		return "any"
	}
	var xs []string
	for _, p := range r.Ports {
		xs = append(xs, p.String())
	}
	return strings.Join(xs, ",")
}

// set returns the set for key, made once per compilation.
func (c *compiler) set(key string, t ruleset.SetType, members []string, comment string) *ruleset.IPSet {
	if s, ok := c.sets[key]; ok {
		return s
	}
	sum := sha256.Sum256([]byte(string(t) + "|" + key))
	ms := append([]string(nil), members...)
	if t == ruleset.HashNet {
		for i, m := range ms {
			ms[i] = strings.TrimSuffix(m, "/32")
		}
	}
	s := &ruleset.IPSet{Name: "PALISADE-" + hex.EncodeToString(sum[:])[:16], Type: t, Members: ms, Comment: comment}
	s.ComputeDigest() // sorts and deduplicates
	c.sets[key] = s
	return s
}

// providerSet is every address of the workloads r's provider holds as a
// destination (no service involved: a filter, a scope, any, a CIDR).
func (c *compiler) providerSet(r *policy.ChainRule) *ruleset.IPSet {
	return c.holderSet("dst|"+r.Provider.String(), "provider "+r.Provider.String(),
		func(p *peer) bool { return c.s.ProviderHolds(r, p.c, nil) })
}

// consumerSet is every address of the workloads r's consumer holds as a
// source.
func (c *compiler) consumerSet(r *policy.ChainRule) *ruleset.IPSet {
	return c.holderSet("src|"+r.Consumer.String(), "consumer "+r.Consumer.String(),
		func(p *peer) bool { return c.s.ConsumerHolds(r, p.c) })
}

// holderSet is the addresses of every peer holds accepts, made once per
// key: hash:ip, or hash:net when a peer is a range.
func (c *compiler) holderSet(key, comment string, holds func(*peer) bool) *ruleset.IPSet {
	if s, ok := c.sets[key]; ok {
		return s
	}
	var members []string
	isNet := false
	for _, p := range c.peers {
		if holds(p) {
			members = append(members, p.addrs...)
			isNet = isNet || p.net
		}
	}
	t := ruleset.HashIP
	if isNet {
		t = ruleset.HashNet
	}
	return c.set(key, t, members, comment)
}

// namedPortSet resolves r's named ports on every destination the provider
// holds: (address, protocol:port) pairs.
func (c *compiler) namedPortSet(r *policy.ChainRule) *ruleset.IPSet {
	key := "dst-named|" + r.Provider.String() + "|" + portKey(r)
	if s, ok := c.sets[key]; ok {
		return s
	}
	var members []string
	for _, p := range c.peers {
		if p.net || !c.s.ProviderHolds(r, p.c, nil) {
			continue
		}
		for _, pr := range policy.ResolvePorts(r, p.w, nil) {
			if pr.Lo == 0 || pr.Lo != pr.Hi || pr.Proto == policy.ProtoAny {
				continue
			}
			for _, a := range p.addrs {
				members = append(members, fmt.Sprintf("%s,%s:%d", a, pr.Proto, pr.Lo))
			}
		}
	}
	return c.set(key, ruleset.HashIPPort, members, "provider "+r.Provider.String()+" named ports")
}
