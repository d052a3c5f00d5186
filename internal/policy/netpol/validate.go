package netpol

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks a policy as the API server would (the rules that matter
// for its meaning: selectors, ports, endPort, ipBlock, policyTypes), so a
// file that kube-apiserver would refuse is refused here too, with the
// line of the field at fault. A policy read from a cluster was validated by
// its API server already.
func Validate(s *Source) error {
	p := s.Policy
	fail := func(path, format string, args ...any) error {
		return &Error{Pos: s.At(path), Field: path, Msg: fmt.Sprintf(format, args...)}
	}
	if p.Name == "" {
		return fail("metadata.name", "missing")
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return fail("metadata.name", "%q: %s", p.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
		return fail("metadata.namespace", "%q: %s", p.Namespace, strings.Join(errs, "; "))
	}
	if err := validSelector(&p.Spec.PodSelector, "spec.podSelector", fail); err != nil {
		return err
	}
	if len(p.Spec.PolicyTypes) > 2 {
		return fail("spec.policyTypes", "at most 2 entries (Ingress, Egress)")
	}
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range p.Spec.PolicyTypes {
		path := fmt.Sprintf("spec.policyTypes[%d]", i)
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			return fail(path, "%q: must be Ingress or Egress", t)
		}
		if seen[t] {
			return fail(path, "%q listed twice", t)
		}
		seen[t] = true
	}
	for i, r := range p.Spec.Ingress {
		base := fmt.Sprintf("spec.ingress[%d]", i)
		if err := validPorts(r.Ports, base, fail); err != nil {
			return err
		}
		for j := range r.From {
			if err := validPeer(&r.From[j], fmt.Sprintf("%s.from[%d]", base, j), fail); err != nil {
				return err
			}
		}
	}
	for i, r := range p.Spec.Egress {
		base := fmt.Sprintf("spec.egress[%d]", i)
		if err := validPorts(r.Ports, base, fail); err != nil {
			return err
		}
		for j := range r.To {
			if err := validPeer(&r.To[j], fmt.Sprintf("%s.to[%d]", base, j), fail); err != nil {
				return err
			}
		}
	}
	return nil
}

type failFunc func(path, format string, args ...any) error

func validPorts(ports []networkingv1.NetworkPolicyPort, base string, fail failFunc) error {
	for k, port := range ports {
		path := fmt.Sprintf("%s.ports[%d]", base, k)
		if port.Protocol != nil {
			switch *port.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				return fail(path+".protocol", "%q: must be TCP, UDP or SCTP", *port.Protocol)
			}
		}
		if port.Port != nil {
			if port.Port.Type == 0 { // a number
				if errs := validation.IsValidPortNum(int(port.Port.IntVal)); len(errs) > 0 {
					return fail(path+".port", "%d: %s", port.Port.IntVal, strings.Join(errs, "; "))
				}
			} else if errs := validation.IsValidPortName(port.Port.StrVal); len(errs) > 0 {
				return fail(path+".port", "%q: %s", port.Port.StrVal, strings.Join(errs, "; "))
			}
		}
		if port.EndPort != nil {
			switch {
			case port.Port == nil:
				return fail(path+".endPort", "may not be set without port")
			case port.Port.Type != 0:
				return fail(path+".endPort", "may not be set with a named port (%q)", port.Port.StrVal)
			case *port.EndPort < port.Port.IntVal:
				return fail(path+".endPort", "%d is below port %d", *port.EndPort, port.Port.IntVal)
			}
			if errs := validation.IsValidPortNum(int(*port.EndPort)); len(errs) > 0 {
				return fail(path+".endPort", "%d: %s", *port.EndPort, strings.Join(errs, "; "))
			}
		}
	}
	return nil
}

func validPeer(peer *networkingv1.NetworkPolicyPeer, path string, fail failFunc) error {
	if peer.PodSelector == nil && peer.NamespaceSelector == nil && peer.IPBlock == nil {
		return fail(path, "must specify podSelector, namespaceSelector or ipBlock")
	}
	if peer.IPBlock != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			return fail(path+".ipBlock", "may not be combined with podSelector or namespaceSelector")
		}
		cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			return fail(path+".ipBlock.cidr", "%q is not a CIDR (e.g. 203.0.113.0/24)", peer.IPBlock.CIDR)
		}
		for i, ex := range peer.IPBlock.Except {
			ep := fmt.Sprintf("%s.ipBlock.except[%d]", path, i)
			e, err := netip.ParsePrefix(ex)
			if err != nil {
				return fail(ep, "%q is not a CIDR", ex)
			}
			// The API server demands each exception be strictly inside cidr.
			if e.Addr().Is4() != cidr.Addr().Is4() || e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()) {
				return fail(ep, "%s must be strictly within %s", ex, peer.IPBlock.CIDR)
			}
		}
	}
	if peer.PodSelector != nil {
		if err := validSelector(peer.PodSelector, path+".podSelector", fail); err != nil {
			return err
		}
	}
	if peer.NamespaceSelector != nil {
		if err := validSelector(peer.NamespaceSelector, path+".namespaceSelector", fail); err != nil {
			return err
		}
	}
	return nil
}

// validSelector checks a label selector the way metav1 parses it: keys
// and values, operators, and values present exactly for In and NotIn.
func validSelector(s *metav1.LabelSelector, path string, fail failFunc) error {
	for k, v := range s.MatchLabels {
		at := path + ".matchLabels." + k
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fail(at, "key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fail(at, "value %q: %s", v, strings.Join(errs, "; "))
		}
	}
	for i, e := range s.MatchExpressions {
		at := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		if errs := validation.IsQualifiedName(e.Key); len(errs) > 0 {
			return fail(at+".key", "%q: %s", e.Key, strings.Join(errs, "; "))
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return fail(at+".values", "operator %s needs values", e.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) > 0 {
				return fail(at+".values", "operator %s takes no values", e.Operator)
			}
		default:
			return fail(at+".operator", "%q: must be In, NotIn, Exists or DoesNotExist", e.Operator)
		}
		for j, v := range e.Values {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return fail(fmt.Sprintf("%s.values[%d]", at, j), "%q: %s", v, strings.Join(errs, "; "))
			}
		}
	}
	return nil
}
