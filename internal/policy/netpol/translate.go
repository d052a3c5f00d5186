package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/policy"
)

// Priorities of the intents an import makes: every allow of every policy
// comes before every isolation deny, which is what makes the allows a union
// (the first matching allow decides; order among allows does not matter).
const (
	AllowPriority   = 100
	IsolatePriority = 1000
)

// Options tune Translate.
type Options struct {
	// Cluster, when set, confines every selector to that inventory cluster
	// (cluster = "NAME"): the policies came from that cluster and select
	// only its pods.
	Cluster string
	// Source is recorded on the version (e.g. "networkpolicy import: cluster lab").
	Source string
}

// Translate turns NetworkPolicies into a version of scope: intents with
// the upstream meaning (see the package comment). The version's catch-all
// is ALLOW, because a pod no NetworkPolicy selects is not isolated. The
// policies must be valid (Validate, or read from an API server); their
// policyTypes are defaulted here as the API server does. Two policies with
// the same namespace and name are an error.
func Translate(scope string, pols []*networkingv1.NetworkPolicy, opts Options) (*policy.Version, error) {
	v := &policy.Version{Scope: scope, CatchAll: policy.Allow, Source: opts.Source, Policies: []policy.Policy{}}
	sorted := append([]*networkingv1.NetworkPolicy(nil), pols...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	var allows, denies []policy.Policy
	for i, p := range sorted {
		if i > 0 && sorted[i-1].Namespace == p.Namespace && sorted[i-1].Name == p.Name {
			return nil, fmt.Errorf("NetworkPolicy %s/%s given twice", p.Namespace, p.Name)
		}
		t := translator{scope: scope, np: p, cluster: opts.Cluster}
		a, d := t.intents()
		allows, denies = append(allows, a...), append(denies, d...)
	}
	v.Policies = append(append(v.Policies, allows...), denies...)
	return v, nil
}

// PolicyTypes returns the directions a policy isolates its pods in, with
// the API server's defaulting: when policyTypes is empty, Ingress always,
// and Egress when the policy has egress rules.
func PolicyTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0
	}
	for _, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

type translator struct {
	scope   string
	np      *networkingv1.NetworkPolicy
	cluster string
}

func (t *translator) intents() (allows, denies []policy.Policy) {
	spec := &t.np.Spec
	selected := t.pods(t.np.Namespace, &spec.PodSelector)
	ingress, egress := PolicyTypes(spec)
	if ingress {
		for i, r := range spec.Ingress {
			ports := portsOf(r.Ports)
			base := fmt.Sprintf("ingress%d", i)
			if len(r.From) == 0 {
				allows = append(allows, t.intent(base, "any", selected, policy.Allow, ports, policy.Ingress))
			}
			for j := range r.From {
				for k, peer := range t.peers(&r.From[j]) {
					name := fmt.Sprintf("%s.from%d", base, j)
					if k > 0 || r.From[j].IPBlock != nil {
						name += "." + strconv.Itoa(k)
					}
					allows = append(allows, t.intent(name, peer, selected, policy.Allow, ports, policy.Ingress))
				}
			}
		}
		// Upstream always allows traffic from the node a pod runs on
		// (kubelet probes), whatever the policies say.
		allows = append(allows, t.intent("ingress-from-host-node", "host-node", selected, policy.Allow, nil, policy.Ingress))
		denies = append(denies, t.intent("isolate-ingress", "any", selected, policy.Deny, nil, policy.Ingress))
	}
	if egress {
		for i, r := range spec.Egress {
			ports := portsOf(r.Ports)
			base := fmt.Sprintf("egress%d", i)
			if len(r.To) == 0 {
				allows = append(allows, t.intent(base, selected, "any", policy.Allow, ports, policy.Egress))
			}
			for j := range r.To {
				for k, peer := range t.peers(&r.To[j]) {
					name := fmt.Sprintf("%s.to%d", base, j)
					if k > 0 || r.To[j].IPBlock != nil {
						name += "." + strconv.Itoa(k)
					}
					allows = append(allows, t.intent(name, selected, peer, policy.Allow, ports, policy.Egress))
				}
			}
		}
		// Upstream decides a connection to a service after DNAT, on the
		// backend pod; the flow to the service's own address (cluster IP)
		// is left to its DNAT-related flow, which these intents decide.
		allows = append(allows, t.intent("egress-via-service", selected, t.services(), policy.Allow, nil, policy.Egress))
		// And traffic to the node a pod runs on.
		allows = append(allows, t.intent("egress-to-host-node", selected, "host-node", policy.Allow, nil, policy.Egress))
		denies = append(denies, t.intent("isolate-egress", selected, "any", policy.Deny, nil, policy.Egress))
	}
	return allows, denies
}

func (t *translator) intent(what, consumer, provider string, a policy.Action, ports []string, dir policy.Direction) policy.Policy {
	prio := AllowPriority
	if a == policy.Deny {
		prio = IsolatePriority
	}
	return policy.Policy{
		Name:      intentName(t.np.Namespace, t.np.Name, what),
		Scope:     t.scope,
		Consumer:  canonical(consumer),
		Provider:  canonical(provider),
		Action:    a,
		Ports:     ports,
		Class:     policy.Default,
		Priority:  prio,
		Direction: dir,
	}
}

// canonical is an endpoint's canonical text (as policy-as-code writes it),
// so an imported version and the same version applied from its YAML are
// equal.
func canonical(endpoint string) string {
	if e, err := policy.ParseEndpoint(endpoint); err == nil {
		return e.String()
	}
	return endpoint
}

// intentName is "netpol.NAMESPACE.NAME.WHAT", shortened with a hash to the
// 128 characters an intent name may have.
func intentName(ns, name, what string) string {
	s := "netpol." + ns + "." + name + "." + what
	if len(s) <= 128 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:6])
	keep := 128 - len(what) - len(h) - 2
	return s[:keep] + "-" + h + "." + what
}

// pods is the filter of the pods a selector picks in a namespace.
func (t *translator) pods(ns string, sel *metav1.LabelSelector) string {
	terms := []string{"kind = pod"}
	if t.cluster != "" {
		terms = append(terms, "cluster = "+quote(t.cluster))
	}
	terms = append(terms, "namespace = "+quote(ns))
	terms = append(terms, selectorTerms("label.", sel)...)
	return strings.Join(terms, " and ")
}

// services is the filter of the services the selected pods may address:
// every one (of the cluster).
func (t *translator) services() string {
	if t.cluster != "" {
		return "kind = service and cluster = " + quote(t.cluster)
	}
	return "kind = service"
}

// peers returns the endpoints of one from/to entry: one filter for pod and
// namespace selectors, one cidr: per block of an ipBlock minus its
// exceptions.
func (t *translator) peers(p *networkingv1.NetworkPolicyPeer) []string {
	if p.IPBlock != nil {
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			return nil // Validate refuses it; an API server too
		}
		var except []netip.Prefix
		for _, e := range p.IPBlock.Except {
			if x, err := netip.ParsePrefix(e); err == nil {
				except = append(except, x.Masked())
			}
		}
		var out []string
		for _, b := range Subtract(cidr.Masked(), except) {
			out = append(out, "cidr:"+b.String())
		}
		return out
	}
	if p.NamespaceSelector == nil {
		return []string{t.pods(t.np.Namespace, p.PodSelector)}
	}
	terms := []string{"kind = pod"}
	if t.cluster != "" {
		terms = append(terms, "cluster = "+quote(t.cluster))
	}
	terms = append(terms, selectorTerms("namespace_label.", p.NamespaceSelector)...)
	if p.PodSelector != nil {
		terms = append(terms, selectorTerms("label.", p.PodSelector)...)
	}
	return []string{strings.Join(terms, " and ")}
}

// selectorTerms writes a label selector as filter conditions over fields
// prefix+key, with the selector's meaning: NotIn and DoesNotExist hold for
// a missing key, as the filter language's negations do.
func selectorTerms(prefix string, s *metav1.LabelSelector) []string {
	if s == nil {
		return nil
	}
	var out []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, prefix+k+" = "+quote(s.MatchLabels[k]))
	}
	for _, e := range s.MatchExpressions {
		vals := make([]string, len(e.Values))
		for i, v := range e.Values {
			vals[i] = quote(v)
		}
		list := "(" + strings.Join(vals, ", ") + ")"
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			out = append(out, prefix+e.Key+" in "+list)
		case metav1.LabelSelectorOpNotIn:
			out = append(out, "not "+prefix+e.Key+" in "+list)
		case metav1.LabelSelectorOpExists:
			out = append(out, prefix+e.Key+" exists")
		case metav1.LabelSelectorOpDoesNotExist:
			out = append(out, "not "+prefix+e.Key+" exists")
		}
	}
	return out
}

// quote writes a filter string literal (the language escapes only \ and ").
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// portsOf writes a rule's ports as intent ports: nil (every port) when the
// rule lists none; a port without a number is every port of its protocol.
func portsOf(ps []networkingv1.NetworkPolicyPort) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		s := strings.ToLower(string(proto))
		switch {
		case p.Port == nil:
		case p.Port.Type != 0: // named: resolved per destination pod
			s += "/" + p.Port.StrVal
		case p.EndPort != nil && *p.EndPort > p.Port.IntVal:
			s += fmt.Sprintf("/%d-%d", p.Port.IntVal, *p.EndPort)
		default:
			s += "/" + strconv.Itoa(int(p.Port.IntVal))
		}
		out = append(out, s)
	}
	return out
}

// Subtract returns the prefixes covering exactly the addresses of p outside
// every prefix of except (an ipBlock's cidr minus its exceptions), in
// address order.
func Subtract(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	for _, e := range except {
		if e.Addr().BitLen() != p.Addr().BitLen() {
			continue
		}
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return nil // p lies inside an exception
		}
	}
	overlaps := false
	for _, e := range except {
		if e.Addr().BitLen() == p.Addr().BitLen() && e.Bits() > p.Bits() && p.Contains(e.Addr()) {
			overlaps = true
			break
		}
	}
	if !overlaps {
		return []netip.Prefix{p}
	}
	lo, hi := halves(p)
	return append(Subtract(lo, except), Subtract(hi, except)...)
}

// halves splits a prefix into its two children.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	i := p.Bits()
	b[i/8] |= 0x80 >> (i % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(hiAddr, bits)
}
