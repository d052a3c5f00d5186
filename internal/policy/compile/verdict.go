package compile

import (
	"net/netip"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// These functions state what the evaluator says of a whole connection, the
// way analysis sees it: a connection through a service is two flows (the
// one the client sends and the DNAT-related one the backend receives),
// and each side is decided on the flow it sees. Compiled rules must give
// the same outcome; the tests (unit and lab) compare against them.

// DirectAllowed: src dials dst (a pod, a node or an external address)
// without a service. Only a DENY on a side refuses; an unscoped side has no
// say.
func DirectAllowed(ev *policy.Evaluator, src, dst policy.Peer, proto policy.Proto, port uint16) bool {
	return ev.Evaluate(&policy.Flow{Src: src, Dst: dst, Proto: proto, Port: port}).Action() != policy.Deny
}

// ServiceAllowed: src dials svc's cluster IP on service port sp and the
// node's DNAT sends it to backend on targetPort. The client's egress and
// the service's own ingress (its deciding scope's) decide on the first
// flow; the client's egress and the backend's ingress on the second (as
// upstream NetworkPolicy, which sees only the backend, and as analysis,
// which judges the DNAT-related flow on both sides).
func ServiceAllowed(ev *policy.Evaluator, src policy.Peer, svc *inventory.Workload, sp inventory.ServicePort, backend policy.Peer, targetPort uint16) bool {
	proto, _ := policy.ParseProto(protoName(sp.Protocol))
	svcPeer := policy.Peer{IP: addr(svc.ClusterIP), Workload: svc}
	d1 := ev.Evaluate(&policy.Flow{Src: src, Dst: svcPeer, Proto: proto, Port: uint16(sp.Port), Service: svc, ServicePort: uint16(sp.Port)})
	d2 := ev.Evaluate(&policy.Flow{Src: src, Dst: backend, Proto: proto, Port: targetPort, Service: svc, ServicePort: uint16(sp.Port)})
	return d1.Egress.Action != policy.Deny && d1.Ingress.Action != policy.Deny && d2.Egress.Action != policy.Deny && d2.Ingress.Action != policy.Deny
}

// NodePortAllowed: src dials node on sp's node port; the node DNATs to
// backend:targetPort and SNATs to itself. The client's egress and the
// node's ingress decide on the first flow, the backend's ingress on the
// second (whose source is the node).
func NodePortAllowed(ev *policy.Evaluator, src, node policy.Peer, svc *inventory.Workload, sp inventory.ServicePort, backend policy.Peer, targetPort uint16) bool {
	proto, _ := policy.ParseProto(protoName(sp.Protocol))
	d1 := ev.Evaluate(&policy.Flow{Src: src, Dst: node, Proto: proto, Port: uint16(sp.NodePort), Service: svc, ServicePort: uint16(sp.Port)})
	d2 := ev.Evaluate(&policy.Flow{Src: node, Dst: backend, Proto: proto, Port: targetPort, Service: svc, ServicePort: uint16(sp.Port)})
	return d1.Egress.Action != policy.Deny && d1.Ingress.Action != policy.Deny && d2.Ingress.Action != policy.Deny
}

func addr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
