// Package netpoltest is the independent reference the NetworkPolicy import
// (internal/policy/netpol) is tested against: Kubernetes NetworkPolicy
// semantics implemented directly over a table of namespaces and pods. It
// is test support; nothing in the product imports it.
package netpoltest

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
//   - Traffic from a pod's own node to the pod, and from the pod to its own
//     node, is always allowed ("regardless of the IP address of the Pod or
//     the node"): kubelet probes.
//   - A port's protocol defaults to TCP; no port number means every port of
//     the protocol; endPort makes port..endPort; a named port matches when
//     the destination pod has a container port of that name and protocol
//     with the connection's port number.

// Pod is one pod of the table: namespace, name, labels, address and
// container ports.
type Pod struct {
	NS, Name string
	Labels   map[string]string
	IP       netip.Addr
	Ports    []corev1.ContainerPort
	Node     string // the node it runs on
}

// Node is a node of the table: its name and address.
type Node struct {
	Name string
	IP   netip.Addr
}

// World is the table: every namespace's labels, every pod and node.
type World struct {
	NSLabels map[string]map[string]string // namespace → its labels
	Pods     []*Pod
	Nodes    []*Node
}

// End is one end of a connection: a pod (IP is its address), a node (IP
// is its address), or an address neither holds (Pod and Node nil).
type End struct {
	Pod  *Pod
	Node *Node
	IP   netip.Addr
}

// Allowed decides a connection from src to dst with the API's semantics.
func (w *World) Allowed(pols []*networkingv1.NetworkPolicy, src, dst End, proto corev1.Protocol, port int32) bool {
	if hosts(src, dst) || hosts(dst, src) {
		return true // a pod and its own node
	}
	return w.egressAllowed(pols, src, dst, proto, port) && w.ingressAllowed(pols, src, dst, proto, port)
}

// hosts reports whether node is the node pod runs on.
func hosts(node, pod End) bool {
	return node.Node != nil && pod.Pod != nil && pod.Pod.Node == node.Node.Name
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

func (w *World) egressAllowed(pols []*networkingv1.NetworkPolicy, src, dst End, proto corev1.Protocol, port int32) bool {
	if src.Pod == nil {
		return true
	}
	isolated := false
	for _, p := range pols {
		_, eg := refTypes(&p.Spec)
		if !eg || p.Namespace != src.Pod.NS || !selects(&p.Spec.PodSelector, src.Pod.Labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Egress {
			if w.peersMatch(r.To, p.Namespace, dst) && portsMatch(r.Ports, dst.Pod, proto, port) {
				return true
			}
		}
	}
	return !isolated
}

func (w *World) ingressAllowed(pols []*networkingv1.NetworkPolicy, src, dst End, proto corev1.Protocol, port int32) bool {
	if dst.Pod == nil {
		return true
	}
	isolated := false
	for _, p := range pols {
		in, _ := refTypes(&p.Spec)
		if !in || p.Namespace != dst.Pod.NS || !selects(&p.Spec.PodSelector, dst.Pod.Labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Ingress {
			if w.peersMatch(r.From, p.Namespace, src) && portsMatch(r.Ports, dst.Pod, proto, port) {
				return true
			}
		}
	}
	return !isolated
}

func (w *World) peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e End) bool {
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

func (w *World) peerMatches(peer networkingv1.NetworkPolicyPeer, policyNS string, e End) bool {
	if peer.IPBlock != nil {
		ip := e.IP
		if e.Pod != nil {
			ip = e.Pod.IP
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
	if e.Pod == nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if e.Pod.NS != policyNS {
			return false
		}
	} else if !selects(peer.NamespaceSelector, w.NSLabels[e.Pod.NS]) {
		return false
	}
	return peer.PodSelector == nil || selects(peer.PodSelector, e.Pod.Labels)
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dst *Pod, proto corev1.Protocol, port int32) bool {
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
			for _, cp := range dst.Ports {
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
