package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NodeInfo is one lab node as other packages need it (the flow agent runs
// in NetNSPath and captures on Uplink, Bridge, VXLAN and the pods' HostVeth).
type NodeInfo struct {
	Name      string `json:"name"`    // Kubernetes Node name
	IP        string `json:"ip"`      // InternalIP, on Uplink
	PodCIDR   string `json:"podCIDR"` // pods get .2 and up; Bridge has .1
	NetNS     string `json:"netns"`   // `ip netns` name
	NetNSPath string `json:"netnsPath"`
	Uplink    string `json:"uplink"`   // underlay interface in the node namespace
	Bridge    string `json:"bridge"`   // pod bridge in the node namespace
	BridgeIP  string `json:"bridgeIP"` // pod gateway; NodePort SNAT source for local endpoints
	VXLAN     string `json:"vxlan,omitempty"`
	VXLANIP   string `json:"vxlanIP,omitempty"` // NodePort SNAT source for remote endpoints (vxlan mode)
}

// PodInfo is one pod the lab runs.
type PodInfo struct {
	Namespace     string  `json:"namespace"`
	Name          string  `json:"name"`
	App           string  `json:"app"` // the Deployment's name (else the pod's `app` label)
	Node          string  `json:"node"`
	IP            string  `json:"ip"`
	NetNS         string  `json:"netns"`
	NetNSPath     string  `json:"netnsPath"`
	UID           string  `json:"uid"`
	Interface     string  `json:"interface"`          // inside the pod namespace
	HostVeth      string  `json:"hostVeth"`           // peer in the node namespace, a port of the node's Bridge
	NodeNetNSPath string  `json:"nodeNetnsPath"`      // where HostVeth lives
	Ports         []int32 `json:"ports"`              // TCP ports served
	UDPPorts      []int32 `json:"udpPorts,omitempty"` // UDP ports served (each datagram answered)
}

// ServicePortInfo is one port of a Service.
type ServicePortInfo struct {
	Name       string `json:"name,omitempty"`
	Port       int32  `json:"port"`
	TargetPort int32  `json:"targetPort"`
	NodePort   int32  `json:"nodePort,omitempty"`
	Protocol   string `json:"protocol"`
}

// ServiceInfo is one Service the lab's proxy programs.
type ServiceInfo struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	ClusterIP string            `json:"clusterIP"`
	Ports     []ServicePortInfo `json:"ports"`
}

// ExternalInfo is a host outside the cluster (the internet stand-in).
type ExternalInfo struct {
	Name      string  `json:"name"`
	IP        string  `json:"ip"`
	NetNS     string  `json:"netns"`
	NetNSPath string  `json:"netnsPath"`
	Ports     []int32 `json:"ports"`
}

// Status is the lab's topology: what `palisade lab status -o json` prints.
type Status struct {
	Name     string         `json:"name"`
	Mode     Mode           `json:"mode"`
	Nodes    []NodeInfo     `json:"nodes"`
	Pods     []PodInfo      `json:"pods"`
	Services []ServiceInfo  `json:"services"`
	External []ExternalInfo `json:"external"`
	// UnderlayNetNS holds the bridge joining the nodes and the external host.
	UnderlayNetNS string `json:"underlayNetns"`
}

// Node returns the node with the given Kubernetes name.
func (s Status) Node(name string) (NodeInfo, bool) {
	for _, n := range s.Nodes {
		if n.Name == name || strings.TrimPrefix(n.Name, s.Name+"-") == name {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// Service returns the named service.
func (s Status) Service(namespace, name string) (ServiceInfo, bool) {
	for _, sv := range s.Services {
		if sv.Namespace == namespace && sv.Name == name {
			return sv, true
		}
	}
	return ServiceInfo{}, false
}

// PodsOf returns the pods whose `app` label is app, in namespace (any if "").
func (s Status) PodsOf(namespace, app string) []PodInfo {
	var out []PodInfo
	for _, p := range s.Pods {
		if p.App == app && (namespace == "" || p.Namespace == namespace) {
			out = append(out, p)
		}
	}
	return out
}

// FindPod resolves "NAMESPACE/NAME" or "NAME" to a pod, where NAME is a pod
// name or a deployment (app label) name, which picks its first pod.
func (s Status) FindPod(target string) (PodInfo, error) {
	ns, name, ok := strings.Cut(target, "/")
	if !ok {
		ns, name = "", target
	}
	var byApp []PodInfo
	for _, p := range s.Pods {
		if ns != "" && p.Namespace != ns {
			continue
		}
		if p.Name == name {
			return p, nil
		}
		if p.App == name {
			byApp = append(byApp, p)
		}
	}
	if len(byApp) > 0 {
		first := byApp[0]
		for _, p := range byApp[1:] {
			if p.Name < first.Name {
				first = p
			}
		}
		return first, nil
	}
	return PodInfo{}, fmt.Errorf("no pod or deployment %q in lab %s", target, s.Name)
}

// State is what a running lab records in StateDir/state.json, so that
// `lab status|exec|traffic|down` in another process can find it, and `lab
// down` can clean up after a crash.
type State struct {
	Name       string `json:"name"`
	PID        int    `json:"pid"` // the process serving the lab
	Kubeconfig string `json:"kubeconfig,omitempty"`
	App        string `json:"app,omitempty"`
	Namespace  string `json:"namespace,omitempty"` // the first app's namespace
	// Namespaces are every namespace the apps created (down deletes them).
	Namespaces []string  `json:"namespaces,omitempty"`
	Phase      string    `json:"phase"` // starting, ready
	Updated    time.Time `json:"updated"`
	Status     Status    `json:"status"`
}

func stateFile(dir string) string { return filepath.Join(dir, "state.json") }

func writeState(dir string, st State) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := stateFile(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, stateFile(dir))
}

// ErrNoLab is returned when no state exists for a lab.
var ErrNoLab = errors.New("no such lab (is `palisade lab up` running?)")

// ReadState reads the state a lab recorded in dir (StateDir(name) by default).
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(stateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return st, ErrNoLab
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", stateFile(dir), err)
	}
	return st, nil
}
