package discovery

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/palisade-dev/palisade/internal/policy"
)

// NetworkPolicies renders the rules as Kubernetes NetworkPolicies with the
// same meaning for the scope's pods: per namespace and pod group, one
// policy isolating ingress and allowing what the rules provide to it, and
// one isolating egress and allowing what its rules consume. A service
// provider becomes its backend pods on their target ports (NetworkPolicy
// is decided after DNAT, so a consumer allowed through a service may also
// reach the backends' target ports directly); behind a node port the
// backends are allowed from the nodes' addresses (the client's address is
// gone after SNAT); nodes and addresses become ipBlocks. With a DENY
// catch-all, each namespace of the scope's pods gets a default deny both
// ways (exact when the scope is whole namespaces). Rules whose
// pods cannot be selected by labels (a cluster with no common label) are
// left out and listed in the returned notes.
func (r *Result) NetworkPolicies() ([]*networkingv1.NetworkPolicy, []string) {
	clusters := map[string]*Cluster{}
	for i := range r.Clusters {
		clusters[r.Clusters[i].Name] = &r.Clusters[i]
	}
	type group struct {
		ns       string
		sel      map[string]string
		name     string
		ingress  []networkingv1.NetworkPolicyIngressRule
		egress   []networkingv1.NetworkPolicyEgressRule
		in, eg   bool
		ingKeys  map[string]bool
		egreKeys map[string]bool
	}
	groups := map[string]*group{}
	get := func(ns, name string, sel map[string]string) *group {
		key := ns + "/" + selectorString(sel)
		g := groups[key]
		if g == nil {
			g = &group{ns: ns, sel: sel, name: name, ingKeys: map[string]bool{}, egreKeys: map[string]bool{}}
			groups[key] = g
		}
		return g
	}
	var notes []string
	for i := range r.Rules {
		rule := &r.Rules[i]
		cons := clusters[rule.ConsumerCluster]
		prov := clusters[rule.ProviderCluster]
		// The provider's pods and ports, as NetworkPolicy sees them.
		var provNS, provName string
		var provSel map[string]string
		ports := rule.Ports
		switch {
		case rule.Backend != nil:
			provNS, provSel, ports = rule.Backend.Namespace, rule.Backend.Selector, rule.Backend.Ports
			provName = strings.TrimPrefix(rule.Provider, "service:")
			provName = provName[strings.IndexByte(provName, '/')+1:]
		case prov != nil && prov.Namespace != "":
			provNS, provSel, provName = prov.Namespace, prov.Labels, shortName(prov.Name)
		}
		npPorts := policyPorts(ports)
		// Ingress on the provider's pods. Behind a node port they see the
		// nodes' addresses (SNAT), not the client's.
		consumer := rule.Consumer
		if rule.Kind == "nodeport" && len(rule.NodeIPs) > 0 && consumer != "any" {
			cons = &Cluster{Name: "nodes", IPs: rule.NodeIPs}
			consumer = ""
		}
		if provNS != "" {
			if len(provSel) == 0 {
				notes = append(notes, "no common label selects the pods of "+rule.Provider+"; its ingress rule is left out")
			} else if peers, ok := peersOf(consumer, cons); ok {
				g := get(provNS, provName, provSel)
				g.in = true
				k := fmt.Sprint(peers, npPorts)
				if !g.ingKeys[k] {
					g.ingKeys[k] = true
					g.ingress = append(g.ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: npPorts})
				}
			}
		}
		// Egress on the consumer's pods; `any` is every pod of the
		// scope's namespaces too.
		if rule.Consumer == "any" && provNS != "" && len(provSel) > 0 {
			for _, ns := range r.Namespaces {
				g := get(ns, "all", map[string]string{})
				g.eg = true
				peers := []networkingv1.NetworkPolicyPeer{podPeer(provNS, provSel)}
				k := fmt.Sprint(peers, npPorts)
				if !g.egreKeys[k] {
					g.egreKeys[k] = true
					g.egress = append(g.egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: npPorts})
				}
			}
		}
		cons = clusters[rule.ConsumerCluster]
		if cons != nil && cons.Namespace != "" {
			if len(cons.Labels) == 0 {
				notes = append(notes, "no common label selects the pods of "+cons.Name+"; its egress rule is left out")
				continue
			}
			var peers []networkingv1.NetworkPolicyPeer
			switch {
			case provNS != "" && len(provSel) > 0:
				peers = []networkingv1.NetworkPolicyPeer{podPeer(provNS, provSel)}
			case strings.HasPrefix(rule.Provider, "cidr:"):
				peers = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: strings.TrimPrefix(rule.Provider, "cidr:")}}}
			case prov != nil && len(prov.IPs) > 0:
				peers = ipPeers(prov.IPs)
			default:
				notes = append(notes, "the provider "+rule.Provider+" cannot be written as a NetworkPolicy peer; "+cons.Name+"'s egress rule to it is left out")
				continue
			}
			g := get(cons.Namespace, shortName(cons.Name), cons.Labels)
			g.eg = true
			k := fmt.Sprint(peers, npPorts)
			if !g.egreKeys[k] {
				g.egreKeys[k] = true
				g.egress = append(g.egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: npPorts})
			}
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []*networkingv1.NetworkPolicy
	if r.CatchAll == policy.Deny {
		// The scope's catch-all: every pod of its namespaces isolated both
		// ways (exact when the scope is whole namespaces).
		for _, ns := range r.Namespaces {
			out = append(out, &networkingv1.NetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "palisade-default-deny", Namespace: ns},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{
					networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
			})
		}
	}
	for _, k := range keys {
		g := groups[k]
		for _, dir := range []string{"ingress", "egress"} {
			np := &networkingv1.NetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "palisade-" + g.name + "-" + dir, Namespace: g.ns},
				Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: g.sel}},
			}
			switch {
			case dir == "ingress" && g.in:
				np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
				np.Spec.Ingress = g.ingress
			case dir == "egress" && g.eg:
				np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
				np.Spec.Egress = g.egress
			default:
				continue
			}
			out = append(out, np)
		}
	}
	sort.Strings(notes)
	return out, notes
}

// WriteNetworkPolicies writes NetworkPolicies() as YAML documents.
func (r *Result) WriteNetworkPolicies(w io.Writer) error {
	nps, notes := r.NetworkPolicies()
	fmt.Fprintf(w, "# NetworkPolicies discovered for scope %s (%d rules).\n", r.Scope, len(r.Rules))
	for _, n := range notes {
		fmt.Fprintf(w, "# note: %s\n", n)
	}
	for _, np := range nps {
		b, err := yaml.Marshal(np)
		if err != nil {
			return err
		}
		// Drop the zero-valued status-like fields the API types carry.
		s := strings.Replace(string(b), "  creationTimestamp: null\n", "", 1)
		if _, err := fmt.Fprintf(w, "---\n%s", s); err != nil {
			return err
		}
	}
	return nil
}

// peersOf is a consumer as NetworkPolicy peers.
func peersOf(consumer string, c *Cluster) ([]networkingv1.NetworkPolicyPeer, bool) {
	switch {
	case consumer == "any":
		return nil, true // no from: every source, pods and addresses
	case strings.HasPrefix(consumer, "cidr:"):
		return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: strings.TrimPrefix(consumer, "cidr:")}}}, true
	case c != nil && c.Namespace != "" && len(c.Labels) > 0:
		return []networkingv1.NetworkPolicyPeer{podPeer(c.Namespace, c.Labels)}, true
	case c != nil && len(c.IPs) > 0:
		return ipPeers(c.IPs), true
	}
	return nil, false
}

func podPeer(ns string, sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		PodSelector:       &metav1.LabelSelector{MatchLabels: sel},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
	}
}

func ipPeers(ips []string) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	return out
}

// policyPorts turns "tcp/80", "tcp/http", "udp" into NetworkPolicy ports.
func policyPorts(ports []string) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range ports {
		proto, port, _ := strings.Cut(p, "/")
		var pr corev1.Protocol
		switch proto {
		case "tcp":
			pr = corev1.ProtocolTCP
		case "udp":
			pr = corev1.ProtocolUDP
		case "sctp":
			pr = corev1.ProtocolSCTP
		default:
			return nil // another protocol: NetworkPolicy can only allow every port
		}
		np := networkingv1.NetworkPolicyPort{Protocol: &pr}
		if port != "" {
			v := intstr.Parse(port)
			if n, err := strconv.Atoi(port); err == nil {
				v = intstr.FromInt32(int32(n))
			}
			np.Port = &v
		}
		out = append(out, np)
	}
	return out
}

func selectorString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + sel[k] + ",")
	}
	return b.String()
}

// shortName is a cluster name without its namespace prefix, fit for a
// Kubernetes object name.
func shortName(s string) string {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToLower(s)
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
