// Package inventory holds Palisade's model of what runs in the clusters it
// watches: workloads (pods, services, nodes, namespaces, user-defined
// external ranges), their attributes, and their history over time, so that an
// IP can be attributed to the workload that held it at any instant.
package inventory

import "time"

// Kind is the kind of a workload.
type Kind string

const (
	KindPod       Kind = "pod"
	KindService   Kind = "service"
	KindNode      Kind = "node"
	KindNamespace Kind = "namespace"
	KindExternal  Kind = "external" // an IP or CIDR defined by the user
)

// Owner is the controller that ultimately owns a pod, resolved through
// intermediate controllers (ReplicaSet → Deployment, Job → CronJob).
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Container is one container of a pod and the image it runs.
type Container struct {
	Name        string          `json:"name"`
	Image       string          `json:"image"`
	ImageDigest string          `json:"imageDigest,omitempty"` // sha256:..., when the runtime reported it
	Ports       []ContainerPort `json:"ports,omitempty"`
}

// ContainerPort is a port a container declares. Named ports are what
// Kubernetes NetworkPolicies and service targetPorts refer to by name: a
// name resolves per pod, to the port of the same name and protocol.
type ContainerPort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"` // TCP, UDP or SCTP
	Port     int32  `json:"port"`
}

// ServicePort is one port of a Kubernetes service.
type ServicePort struct {
	Name       string `json:"name,omitempty"`
	Protocol   string `json:"protocol"`
	Port       int32  `json:"port"`
	TargetPort string `json:"targetPort,omitempty"` // number or named port
	NodePort   int32  `json:"nodePort,omitempty"`
}

// Endpoint is one backend address of a service (from EndpointSlices).
type Endpoint struct {
	IP    string  `json:"ip"`
	Ports []int32 `json:"ports,omitempty"`
	Pod   string  `json:"pod,omitempty"` // namespace/name of the backing pod
	Node  string  `json:"node,omitempty"`
	Ready bool    `json:"ready"`
}

// Workload is one inventory item. Its ID is stable for the life of the
// object: "<cluster>/<kind>/<namespace>/<name>" (namespace empty for
// cluster-scoped kinds), or "external/<name>" for user-defined ranges.
type Workload struct {
	ID          string            `json:"id"`
	Cluster     string            `json:"cluster"`
	Kind        Kind              `json:"kind"`
	Namespace   string            `json:"namespace,omitempty"`
	Name        string            `json:"name"`
	UID         string            `json:"uid,omitempty"`
	IPs         []string          `json:"ips,omitempty"`   // pod IPs, node InternalIPs, service clusterIPs, external addresses
	CIDRs       []string          `json:"cidrs,omitempty"` // node podCIDRs, external ranges
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// NamespaceLabels are, for a pod, the labels its namespace carried at
	// this version's time (a label change of the namespace makes a new
	// version of each of its pods), so a filter can select pods by their
	// namespace's labels as a NetworkPolicy namespaceSelector does.
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`
	Node            string            `json:"node,omitempty"`
	HostIP          string            `json:"hostIP,omitempty"`
	Phase           string            `json:"phase,omitempty"`
	Owner           *Owner            `json:"owner,omitempty"`
	Containers      []Container       `json:"containers,omitempty"`
	// ImagePullSecrets and ServiceAccount let the scanner find registry credentials.
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`
	ServiceAccount   string   `json:"serviceAccount,omitempty"`

	ServiceType string            `json:"serviceType,omitempty"`
	ClusterIP   string            `json:"clusterIP,omitempty"`
	Ports       []ServicePort     `json:"ports,omitempty"`
	Selector    map[string]string `json:"selector,omitempty"`
	Endpoints   []Endpoint        `json:"endpoints,omitempty"`

	// Attrs are attributes published by other parts of Palisade, e.g. the
	// scanner's vuln.max_cvss, vuln.critical, vuln.high, vuln.cve. Values
	// are sets of strings (numbers formatted as decimals).
	Attrs map[string][]string `json:"attrs,omitempty"`

	Created time.Time  `json:"created"`
	Deleted *time.Time `json:"deleted,omitempty"`
	// Updated is when Palisade last saw a change of this workload.
	Updated time.Time `json:"updated"`

	// applied orders the versions an inventory recorded (compaction
	// rewrites its log in that order, so a replay rebuilds it exactly).
	applied uint64
}

// Alive reports whether the workload exists at time t.
func (w *Workload) Alive(t time.Time) bool {
	if !w.Created.IsZero() && t.Before(w.Created) {
		return false
	}
	return w.Deleted == nil || t.Before(*w.Deleted)
}
