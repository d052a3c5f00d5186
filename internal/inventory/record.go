package inventory

import (
	"strconv"
	"strings"

	"github.com/palisade-dev/palisade/internal/filter"
)

// Fields a workload filter can name. Prefixed fields: label.<key>,
// annotation.<key>, namespace_label.<key> (a pod's namespace's labels), and attributes published by other parts of Palisade
// such as vuln.max_cvss, vuln.critical, vuln.high and vuln.cve (a set).
var Fields = []string{
	"id", "cluster", "kind", "name", "namespace", "uid", "node", "host_ip", "phase",
	"ip", "cidr", "owner.kind", "owner.name",
	"image", "image.digest", "container",
	"service.type", "service.cluster_ip", "service.port", "service.node_port", "service.target_port",
	"endpoint.ip", "service_account",
	"deleted",
}

// FieldPrefixes are the open-ended field families.
var FieldPrefixes = []string{"label.", "annotation.", "namespace_label.", "vuln.", "attr."}

// Schema validates workload filter field names.
var Schema = filter.StaticSchema{Fields: Fields, Prefixes: FieldPrefixes}

// Record adapts a workload to the filter language.
type Record struct{ W *Workload }

// Field implements filter.Record.
func (r Record) Field(name string) (filter.Value, bool) {
	w := r.W
	scalar := func(s string) (filter.Value, bool) {
		if s == "" {
			return filter.Value{}, false
		}
		return filter.Value{Str: s}, true
	}
	set := func(ss []string) (filter.Value, bool) {
		if len(ss) == 0 {
			return filter.Value{}, false
		}
		return filter.Value{Strs: ss, Set: true}, true
	}
	switch name {
	case "id":
		return scalar(w.ID)
	case "cluster":
		return scalar(w.Cluster)
	case "kind":
		return scalar(string(w.Kind))
	case "name":
		return scalar(w.Name)
	case "namespace":
		if w.Kind == KindNamespace {
			return scalar(w.Name)
		}
		return scalar(w.Namespace)
	case "uid":
		return scalar(w.UID)
	case "node":
		return scalar(w.Node)
	case "host_ip":
		return scalar(w.HostIP)
	case "phase":
		return scalar(w.Phase)
	case "ip":
		return set(w.IPs)
	case "cidr":
		return set(w.CIDRs)
	case "owner.kind":
		if w.Owner == nil {
			return filter.Value{}, false
		}
		return scalar(w.Owner.Kind)
	case "owner.name":
		if w.Owner == nil {
			return filter.Value{}, false
		}
		return scalar(w.Owner.Name)
	case "image", "image.digest", "container":
		var ss []string
		for _, c := range w.Containers {
			switch name {
			case "image":
				ss = append(ss, c.Image)
			case "image.digest":
				if c.ImageDigest != "" {
					ss = append(ss, c.ImageDigest)
				}
			default:
				ss = append(ss, c.Name)
			}
		}
		return set(ss)
	case "service.type":
		return scalar(w.ServiceType)
	case "service.cluster_ip":
		return scalar(w.ClusterIP)
	case "service.port", "service.node_port", "service.target_port":
		var ss []string
		for _, p := range w.Ports {
			switch name {
			case "service.port":
				ss = append(ss, strconv.Itoa(int(p.Port)))
			case "service.node_port":
				if p.NodePort != 0 {
					ss = append(ss, strconv.Itoa(int(p.NodePort)))
				}
			default:
				if p.TargetPort != "" {
					ss = append(ss, p.TargetPort)
				}
			}
		}
		return set(ss)
	case "endpoint.ip":
		var ss []string
		for _, e := range w.Endpoints {
			ss = append(ss, e.IP)
		}
		return set(ss)
	case "service_account":
		return scalar(w.ServiceAccount)
	case "deleted":
		if w.Deleted != nil {
			return scalar("true")
		}
		return scalar("false")
	}
	switch {
	case strings.HasPrefix(name, "label."):
		v, ok := w.Labels[name[len("label."):]]
		return filter.Value{Str: v}, ok
	case strings.HasPrefix(name, "annotation."):
		v, ok := w.Annotations[name[len("annotation."):]]
		return filter.Value{Str: v}, ok
	case strings.HasPrefix(name, "namespace_label."):
		if w.Kind == KindNamespace {
			v, ok := w.Labels[name[len("namespace_label."):]]
			return filter.Value{Str: v}, ok
		}
		v, ok := w.NamespaceLabels[name[len("namespace_label."):]]
		return filter.Value{Str: v}, ok
	case strings.HasPrefix(name, "attr."):
		return attr(w, name[len("attr."):])
	}
	return attr(w, name)
}

// attr reads a published attribute. Sets (vuln.cve) are sets; single
// values are scalars.
func attr(w *Workload, key string) (filter.Value, bool) {
	v := w.Attrs[key]
	if len(v) == 0 {
		return filter.Value{}, false // an empty set (no CVEs) does not exist
	}
	if len(v) == 1 && !strings.HasSuffix(key, ".cve") {
		return filter.Value{Str: v[0]}, true
	}
	return filter.Value{Strs: v, Set: true}, true
}
