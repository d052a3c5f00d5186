package compile

import (
	"fmt"
	"strconv"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

// The client's egress after DNAT. A pod's egress chain (in its own
// namespace) sees a connection to a service before the DNAT, so it decides
// the flow to the cluster IP; the evaluator (and upstream NetworkPolicy,
// which sees only the backend) decides the client's egress on the
// DNAT-related flow to the backend too. The two differ when an egress
// rule that is not about the service (a filter, a CIDR, any) decides the
// flow to a backend but not the flow to the cluster IP — e.g. an imported
// egress isolation: the flow to the cluster IP is allowed
// (…egress-via-service), the flow to the backend denied unless an egress
// rule admits it.
//
// The client's node did the DNAT and its FORWARD chain sees the
// connection with both destinations (ctorigdst: the cluster IP; -d: the
// backend), so there the client's egress decision of the DNAT-related
// flow is enforced: for each (service port, backend) that some clients on
// the node may dial (their egress allows the flow to the cluster IP) but
// whose egress refuses the flow to that backend, one refusal matched on
// the clients (an IP set), the backend address and target port, and the
// original destination. The decision is the client's egress chain walked
// on that flow at compile time, per distinct chain (pods whose egress
// rules are the same share it); nothing is written when the rules that
// could decide the backend flow are all about the service itself, so the
// reference material's case 2 still has no node rules.

// dnatRefusal is one (service port, backend, target port) a client's
// egress refuses after DNAT, and the rule that refuses it.
type dnatRefusal struct {
	svc     *inventory.Workload
	port    inventory.ServicePort
	backend *peer
	target  uint16
	ref     string
}

// egressAfterDNAT prepends to n's forward chain the refusals of the
// egress decisions, after DNAT, of the enforced pods n runs. It returns
// the first deciding scope that contributed ("": none).
func (c *compiler) egressAfterDNAT(b *rulesBuilder, n *peer) string {
	type group struct {
		r       dnatRefusal
		ip      string // the backend's address
		clients []string
	}
	var order []string
	groups := map[string]*group{}
	first := ""
	for _, p := range c.podsOn[nodeKey(n.w.Cluster, n.w.Name)] {
		d := c.s.DecidingScope(p.c)
		if !c.in.Enforced[d] {
			continue
		}
		for _, r := range c.refusedAfterDNAT(d, p) {
			if first == "" {
				first = d
			}
			for _, ip := range r.backend.addrs {
				k := fmt.Sprintf("%s/%s|%s:%d|%s|%d|%s", r.svc.Namespace, r.svc.Name, protoName(r.port.Protocol), r.port.Port, ip, r.target, r.ref)
				g := groups[k]
				if g == nil {
					g = &group{r: r, ip: ip}
					groups[k] = g
					order = append(order, k)
				}
				g.clients = append(g.clients, p.addrs...)
			}
		}
	}
	var rules []ruleset.Rule
	for _, k := range order {
		g := groups[k]
		svcRef := g.r.svc.Namespace + "/" + g.r.svc.Name
		s := c.set("egress-dnat|"+nodeKey(n.w.Cluster, n.w.Name)+"|"+k, ruleset.HashIP, g.clients, "clients on "+n.w.Name+" whose egress refuses "+svcRef+" to "+g.r.backend.w.Name)
		rules = append(rules, ruleset.Rule{Verdict: ruleset.Drop, Proto: protoName(g.r.port.Protocol), Ports: strconv.Itoa(int(g.r.target)), Set: b.use(s), Dst: g.ip,
			OrigDst: g.r.svc.ClusterIP, OrigDstPort: uint16(g.r.port.Port), DNATOnly: true,
			Comment: g.r.ref + " egress after DNAT: service " + svcRef + " to " + g.r.backend.w.Name})
	}
	b.r.Forward.Rules = append(rules, b.r.Forward.Rules...)
	return first
}

// refusedAfterDNAT lists what pod p's egress (deciding scope d) refuses
// after DNAT though it allows the flow to the cluster IP; computed once
// per distinct egress rule list.
func (c *compiler) refusedAfterDNAT(d string, p *peer) []dnatRefusal {
	eg := c.chain(d, policy.Egress)
	idx := eg.byPeer[p]
	kb := append(make([]byte, 0, len(d)+1+6*len(idx)), d...)
	for _, i := range idx {
		kb = strconv.AppendInt(append(kb, ','), int64(i), 10)
	}
	key := string(kb)
	if c.dnatRef == nil {
		c.dnatRef = map[string][]dnatRefusal{}
	}
	if out, ok := c.dnatRef[key]; ok {
		return out
	}
	var out []dnatRefusal
	decided := func(i int) (policy.Action, string) {
		if i < 0 {
			return eg.catchAll.Action, eg.catchAll.Rule.String()
		}
		return eg.rules[i].Action, eg.rules[i].Ref.String()
	}
	for _, svc := range c.services {
		sp := c.byW[svc]
		if sp == nil || svc.ClusterIP == "" || svc.ClusterIP == "None" {
			continue
		}
		var bes []*peer
		for _, port := range svc.Ports {
			proto := protoName(port.Protocol)
			// Can the flows to the backends be decided otherwise than the
			// flow to the cluster IP? A rule about service:S decides the
			// backend flows of S as it decides the flow to S's cluster IP,
			// and none of another service's; so only where a rule not
			// about the service can match the flow to the cluster IP
			// (service port) or a backend flow (target port). First by
			// ports alone, over every rule (cheap, and enough to rule out
			// most services).
			tp, numeric := uint16(port.Port), true
			if port.TargetPort != "" {
				n, err := strconv.ParseUint(port.TargetPort, 10, 16)
				tp, numeric = uint16(n), err == nil
			}
			mayDecide := func(r *policy.ChainRule) bool {
				return r.Provider.Kind != policy.EndpointService && (r.AnyPort || !numeric || hasNamed(r.Ports) || portsHold(r.Ports, proto, tp))
			}
			relevant := false
			for _, i := range idx {
				r := &eg.rules[i]
				if relevant = mayDecide(r) || r.Provider.Kind != policy.EndpointService && portsHold(r.Ports, proto, uint16(port.Port)); relevant {
					break
				}
			}
			if !relevant {
				continue
			}
			// The flow to the cluster IP: the pod's own egress chain
			// decides it; if it refuses, nothing more to do.
			at, i1 := len(idx), -1
			for k, i := range idx {
				r := &eg.rules[i]
				if c.s.ProviderHolds(r, sp.c, svc) && (r.AnyPort || portsHold(policy.ResolvePorts(r, svc, svc), proto, uint16(port.Port))) {
					at, i1 = k, i
					break
				}
			}
			if a, _ := decided(i1); a != policy.Allow {
				continue
			}
			// Exactly: a rule before the one deciding the flow to the
			// cluster IP, or that one if it is not about the service.
			relevant = i1 >= 0 && eg.rules[i1].Provider.Kind != policy.EndpointService
			for _, i := range idx[:at] {
				if relevant {
					break
				}
				relevant = mayDecide(&eg.rules[i])
			}
			if !relevant {
				continue
			}
			if bes == nil {
				bes = c.backends(svc)
			}
			for _, be := range bes {
				for _, target := range targetPorts(svc, port, be.w) {
					i2 := -1
					for _, i := range idx {
						r := &eg.rules[i]
						wire := target
						if r.ViaService {
							wire = uint16(port.Port)
						}
						if c.s.ProviderHolds(r, be.c, svc) && (r.AnyPort || portsHold(policy.ResolvePorts(r, be.w, svc), proto, wire)) {
							i2 = i
							break
						}
					}
					if a, ref := decided(i2); a != policy.Allow {
						out = append(out, dnatRefusal{svc: svc, port: port, backend: be, target: target, ref: ref})
					}
				}
			}
		}
	}
	c.dnatRef[key] = out
	return out
}
