package netpol

import (
	"context"
	"fmt"
	"sort"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// FromCluster lists every NetworkPolicy of a cluster (all namespaces, in
// pages), ordered by namespace and name. The API server has validated and
// defaulted them.
func FromCluster(ctx context.Context, c kubernetes.Interface) ([]*networkingv1.NetworkPolicy, error) {
	var out []*networkingv1.NetworkPolicy
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := c.NetworkingV1().NetworkPolicies("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list NetworkPolicies: %w", err)
		}
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
		if len(out) > MaxPolicies {
			return nil, fmt.Errorf("more than %d NetworkPolicies", MaxPolicies)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
