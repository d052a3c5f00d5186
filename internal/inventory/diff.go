package inventory

import (
	"reflect"
)

// diff names the attributes that differ between two versions, for the
// workload's history. Bookkeeping fields (Updated) are not changes.
func diff(a, b *Workload) []string {
	var out []string
	check := func(name string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	check("labels", nonEmptyMap(a.Labels), nonEmptyMap(b.Labels))
	check("annotations", nonEmptyMap(a.Annotations), nonEmptyMap(b.Annotations))
	check("namespaceLabels", nonEmptyMap(a.NamespaceLabels), nonEmptyMap(b.NamespaceLabels))
	check("ips", nonEmpty(a.IPs), nonEmpty(b.IPs))
	check("cidrs", nonEmpty(a.CIDRs), nonEmpty(b.CIDRs))
	check("node", a.Node, b.Node)
	check("hostIP", a.HostIP, b.HostIP)
	check("phase", a.Phase, b.Phase)
	check("owner", a.Owner, b.Owner)
	check("containers", nonEmpty(a.Containers), nonEmpty(b.Containers))
	check("imagePullSecrets", nonEmpty(a.ImagePullSecrets), nonEmpty(b.ImagePullSecrets))
	check("serviceAccount", a.ServiceAccount, b.ServiceAccount)
	check("serviceType", a.ServiceType, b.ServiceType)
	check("clusterIP", a.ClusterIP, b.ClusterIP)
	check("ports", nonEmpty(a.Ports), nonEmpty(b.Ports))
	check("selector", nonEmptyMap(a.Selector), nonEmptyMap(b.Selector))
	check("endpoints", nonEmpty(a.Endpoints), nonEmpty(b.Endpoints))
	check("attrs", nonEmptyMap(a.Attrs), nonEmptyMap(b.Attrs))
	check("uid", a.UID, b.UID)
	return out
}

func nonEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nonEmptyMap[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}
