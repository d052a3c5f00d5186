package netpoltest

import (
	"context"
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// FromAPI builds the table from an API server's own objects: the
// namespaces' labels, and their pods with labels, IP and container ports,
// as a NetworkPolicy implementation sees them. A pod without an IP yet is
// an error.
func FromAPI(ctx context.Context, c kubernetes.Interface, namespaces []string) (*World, error) {
	w := &World{NSLabels: map[string]map[string]string{}}
	for _, ns := range namespaces {
		n, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		w.NSLabels[ns] = n.Labels
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, p := range pods.Items {
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s has no IP yet: %q", ns, p.Name, p.Status.PodIP)
			}
			rp := &Pod{NS: ns, Name: p.Name, Labels: p.Labels, IP: ip, Node: p.Spec.NodeName}
			for _, ctr := range p.Spec.Containers {
				rp.Ports = append(rp.Ports, ctr.Ports...)
			}
			w.Pods = append(w.Pods, rp)
		}
	}
	sort.Slice(w.Pods, func(i, j int) bool { return w.Pods[i].IP.Less(w.Pods[j].IP) })
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				w.Nodes = append(w.Nodes, &Node{Name: n.Name, IP: ip})
			}
		}
	}
	sort.Slice(w.Nodes, func(i, j int) bool { return w.Nodes[i].IP.Less(w.Nodes[j].IP) })
	return w, nil
}

// PodAt returns the pod holding ip, or nil.
func (w *World) PodAt(ip netip.Addr) *Pod {
	for _, p := range w.Pods {
		if p.IP == ip {
			return p
		}
	}
	return nil
}
