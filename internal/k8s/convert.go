package k8s

import (
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// ID returns the inventory ID of a Kubernetes object.
func ID(cluster string, kind inventory.Kind, namespace, name string) string {
	return cluster + "/" + string(kind) + "/" + namespace + "/" + name
}

func base(cluster string, kind inventory.Kind, m *metav1.ObjectMeta) inventory.Workload {
	return inventory.Workload{
		ID:          ID(cluster, kind, m.Namespace, m.Name),
		Cluster:     cluster,
		Kind:        kind,
		Namespace:   m.Namespace,
		Name:        m.Name,
		UID:         string(m.UID),
		Labels:      copyMap(m.Labels),
		Annotations: copyMap(m.Annotations),
		Created:     m.CreationTimestamp.Time,
		Updated:     time.Now(),
	}
}

// owners resolves a pod's controller through its intermediate controllers,
// and its namespace's labels.
type owners interface {
	replicaSet(namespace, name string) (*appsv1.ReplicaSet, bool)
	job(namespace, name string) (*batchv1.Job, bool)
	namespaceLabels(namespace string) map[string]string
}

func podWorkload(cluster string, p *corev1.Pod, o owners) inventory.Workload {
	w := base(cluster, inventory.KindPod, &p.ObjectMeta)
	w.NamespaceLabels = copyMap(o.namespaceLabels(p.Namespace))
	w.Node = p.Spec.NodeName
	w.HostIP = p.Status.HostIP
	w.Phase = string(p.Status.Phase)
	w.ServiceAccount = p.Spec.ServiceAccountName
	for _, s := range p.Spec.ImagePullSecrets {
		w.ImagePullSecrets = append(w.ImagePullSecrets, s.Name)
	}
	for _, ip := range p.Status.PodIPs {
		w.IPs = append(w.IPs, ip.IP)
	}
	if len(w.IPs) == 0 && p.Status.PodIP != "" {
		w.IPs = []string{p.Status.PodIP}
	}
	digests := map[string]string{}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		digests[cs.Name] = imageDigest(cs.ImageID)
	}
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		ic := inventory.Container{Name: c.Name, Image: c.Image, ImageDigest: digests[c.Name]}
		for _, cp := range c.Ports {
			proto := string(cp.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			ic.Ports = append(ic.Ports, inventory.ContainerPort{Name: cp.Name, Protocol: proto, Port: cp.ContainerPort})
		}
		w.Containers = append(w.Containers, ic)
	}
	w.Owner = resolveOwner(p.Namespace, p.OwnerReferences, p.Labels, o)
	return w
}

// imageDigest extracts "sha256:..." from a runtime image ID such as
// "docker-pullable://repo@sha256:abc" or "sha256:abc".
func imageDigest(imageID string) string {
	if i := strings.LastIndex(imageID, "sha256:"); i >= 0 {
		return imageID[i:]
	}
	return ""
}

func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

func resolveOwner(ns string, refs []metav1.OwnerReference, labels map[string]string, o owners) *inventory.Owner {
	ref := controllerOf(refs)
	if ref == nil {
		return nil
	}
	switch ref.Kind {
	case "ReplicaSet":
		if rs, ok := o.replicaSet(ns, ref.Name); ok {
			if up := controllerOf(rs.OwnerReferences); up != nil {
				return &inventory.Owner{Kind: up.Kind, Name: up.Name}
			}
			return &inventory.Owner{Kind: "ReplicaSet", Name: ref.Name}
		}
		// The ReplicaSet is not in the cache yet: a Deployment's ReplicaSet is
		// named <deployment>-<pod-template-hash>.
		if h := labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
			return &inventory.Owner{Kind: "Deployment", Name: strings.TrimSuffix(ref.Name, "-"+h)}
		}
	case "Job":
		if j, ok := o.job(ns, ref.Name); ok {
			if up := controllerOf(j.OwnerReferences); up != nil {
				return &inventory.Owner{Kind: up.Kind, Name: up.Name}
			}
		}
	}
	return &inventory.Owner{Kind: ref.Kind, Name: ref.Name}
}

func serviceWorkload(cluster string, s *corev1.Service, slices []*discoveryv1.EndpointSlice) inventory.Workload {
	w := base(cluster, inventory.KindService, &s.ObjectMeta)
	w.ServiceType = string(s.Spec.Type)
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		w.ClusterIP = s.Spec.ClusterIP
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				w.IPs = append(w.IPs, ip)
			}
		}
	}
	w.Selector = copyMap(s.Spec.Selector)
	for _, p := range s.Spec.Ports {
		w.Ports = append(w.Ports, inventory.ServicePort{
			Name: p.Name, Protocol: string(p.Protocol), Port: p.Port,
			TargetPort: p.TargetPort.String(), NodePort: p.NodePort,
		})
	}
	for _, sl := range slices {
		var ports []int32
		for _, p := range sl.Ports {
			if p.Port != nil {
				ports = append(ports, *p.Port)
			}
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			for _, a := range ep.Addresses {
				e := inventory.Endpoint{IP: a, Ports: ports, Ready: ready}
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					e.Pod = ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
				}
				if ep.NodeName != nil {
					e.Node = *ep.NodeName
				}
				w.Endpoints = append(w.Endpoints, e)
			}
		}
	}
	sort.Slice(w.Endpoints, func(i, j int) bool { return w.Endpoints[i].IP < w.Endpoints[j].IP })
	return w
}

func nodeWorkload(cluster string, n *corev1.Node) inventory.Workload {
	w := base(cluster, inventory.KindNode, &n.ObjectMeta)
	w.Node = n.Name
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			w.IPs = append(w.IPs, a.Address)
		}
	}
	w.CIDRs = append(w.CIDRs, n.Spec.PodCIDRs...)
	if len(w.CIDRs) == 0 && n.Spec.PodCIDR != "" {
		w.CIDRs = []string{n.Spec.PodCIDR}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			w.Phase = map[corev1.ConditionStatus]string{corev1.ConditionTrue: "Ready"}[c.Status]
			if w.Phase == "" {
				w.Phase = "NotReady"
			}
		}
	}
	return w
}

func namespaceWorkload(cluster string, n *corev1.Namespace) inventory.Workload {
	w := base(cluster, inventory.KindNamespace, &n.ObjectMeta)
	w.Phase = string(n.Status.Phase)
	return w
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
