package netpol

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// This file is the independent reference the translation must agree with:
// Kubernetes NetworkPolicy semantics implemented directly, as the API
// reference (k8s.io/api/networking/v1 types.go) and kube-network-policies
// state them, over a table of namespaces and pods. It shares nothing with
// the translation (no filters, no intents, no evaluator): selectors are
// matched with apimachinery's own label selectors.
//
//   - A pod is isolated for ingress (egress) when some policy of its
//     namespace selects it and has Ingress (Egress) among its policyTypes;
//     policyTypes defaults to Ingress, plus Egress when there are egress
//     rules.
//   - A connection is allowed when the source's egress allows it and the
//     destination's ingress allows it. A non-isolated side allows all; an
//     isolated side allows what at least one rule of one selecting policy
//     of that direction allows (the union of allows).
//   - A rule matches when one of its peers matches (no peers: every peer)
//     and one of its ports matches (no ports: every port).
//   - A peer with a podSelector alone selects pods of the policy's
//     namespace; a namespaceSelector alone, every pod of the selected
//     namespaces; both, the pods matching podSelector in the selected
//     namespaces; an ipBlock, the addresses in cidr but in no except
//     (whatever holds them, pods included, as kube-network-policies does).
//     Selectors never match an address no pod holds.
//   - A port's protocol defaults to TCP; no port number means every port of
//     the protocol; endPort makes port..endPort; a named port matches when
//     the destination pod has a container port of that name and protocol
//     with the connection's port number.

type refPod struct {
	ns, name string
	labels   map[string]string
	ip       netip.Addr
	ports    []corev1.ContainerPort
}

type refWorld struct {
	nsLabels map[string]map[string]string // namespace → its labels
	pods     []*refPod
}

// refEnd is one end of a connection: a pod, or an address no pod holds.
type refEnd struct {
	pod *refPod
	ip  netip.Addr
}

func (w *refWorld) allowed(pols []*networkingv1.NetworkPolicy, src, dst refEnd, proto corev1.Protocol, port int32) bool {
	return w.egressAllowed(pols, src, dst, proto, port) && w.ingressAllowed(pols, src, dst, proto, port)
}

func refTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) != 0
	}
	for _, t := range spec.PolicyTypes {
		ingress = ingress || t == networkingv1.PolicyTypeIngress
		egress = egress || t == networkingv1.PolicyTypeEgress
	}
	return ingress, egress
}

func selects(s *metav1.LabelSelector, set map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		panic(err) // test data are valid
	}
	return sel.Matches(labels.Set(set))
}

func (w *refWorld) egressAllowed(pols []*networkingv1.NetworkPolicy, src, dst refEnd, proto corev1.Protocol, port int32) bool {
	if src.pod == nil {
		return true
	}
	isolated := false
	for _, p := range pols {
		_, eg := refTypes(&p.Spec)
		if !eg || p.Namespace != src.pod.ns || !selects(&p.Spec.PodSelector, src.pod.labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Egress {
			if w.peersMatch(r.To, p.Namespace, dst) && portsMatch(r.Ports, dst.pod, proto, port) {
				return true
			}
		}
	}
	return !isolated
}

func (w *refWorld) ingressAllowed(pols []*networkingv1.NetworkPolicy, src, dst refEnd, proto corev1.Protocol, port int32) bool {
	if dst.pod == nil {
		return true
	}
	isolated := false
	for _, p := range pols {
		in, _ := refTypes(&p.Spec)
		if !in || p.Namespace != dst.pod.ns || !selects(&p.Spec.PodSelector, dst.pod.labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Ingress {
			if w.peersMatch(r.From, p.Namespace, src) && portsMatch(r.Ports, dst.pod, proto, port) {
				return true
			}
		}
	}
	return !isolated
}

func (w *refWorld) peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e refEnd) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if w.peerMatches(peer, policyNS, e) {
			return true
		}
	}
	return false
}

func (w *refWorld) peerMatches(peer networkingv1.NetworkPolicyPeer, policyNS string, e refEnd) bool {
	if peer.IPBlock != nil {
		ip := e.ip
		if e.pod != nil {
			ip = e.pod.ip
		}
		if !netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(ip) {
			return false
		}
		for _, x := range peer.IPBlock.Except {
			if netip.MustParsePrefix(x).Contains(ip) {
				return false
			}
		}
		return true
	}
	if e.pod == nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if e.pod.ns != policyNS {
			return false
		}
	} else if !selects(peer.NamespaceSelector, w.nsLabels[e.pod.ns]) {
		return false
	}
	return peer.PodSelector == nil || selects(peer.PodSelector, e.pod.labels)
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dst *refPod, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		want := corev1.ProtocolTCP
		if p.Protocol != nil {
			want = *p.Protocol
		}
		if want != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == 1: // named: the destination pod's port of that name
			if dst == nil {
				continue
			}
			for _, cp := range dst.ports {
				cproto := cp.Protocol
				if cproto == "" {
					cproto = corev1.ProtocolTCP
				}
				if cp.Name == p.Port.StrVal && cproto == proto && cp.ContainerPort == port {
					return true
				}
			}
		case p.EndPort != nil:
			if port >= p.Port.IntVal && port <= *p.EndPort {
				return true
			}
		default:
			if port == p.Port.IntVal {
				return true
			}
		}
	}
	return false
}
