// Package lab builds a multi-node Kubernetes network out of Linux network
// namespaces, registers it in a real API server and runs an application on
// it with real sockets, so flow visibility and enforcement can be tested on
// real packets crossing real veths, bridges, NAT and VXLAN.
//
// Layout of one lab named NAME (every object lives in a namespace named
// pal-NAME-*; the root namespace is never touched):
//
//	pal-NAME-underlay   bridge br0 joining every node's eth0 and the external host
//	pal-NAME-nodeI      eth0 (underlay IP), cbr0 (pod CIDR gateway), vxlan0 (vxlan mode),
//	                    one host-side veth per pod, kube-proxy-style iptables NAT
//	pal-NAME-pod-NS-POD eth0 (pod IP), default route to cbr0
//	pal-NAME-ext        eth0 203.0.113.10, the internet stand-in, serving TCP 80 and 666,
//	                    with a route to each node's pod CIDR via that node
//
// The lab is also the cluster's scheduler and kubelet: it binds pending pods
// to its nodes, plumbs each pod's namespace, serves the pod's container ports
// and reports the pod Running and Ready, so the real controller-manager writes
// EndpointSlices. Its proxy follows Services and EndpointSlices.
package lab

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"time"

	"k8s.io/client-go/rest"
)

// Mode is how pod traffic crosses between nodes.
type Mode string

// Inter-node modes. IPIP and GENEVE are not built into this kernel.
const (
	ModeDirect Mode = "direct" // routes to each peer's pod CIDR via its underlay IP
	ModeVXLAN  Mode = "vxlan"  // VNI 1 on UDP 4789, static FDB/neighbour per peer
)

// Address plan. Labs are isolated namespaces, so concurrent labs reuse it.
const (
	UnderlayCIDR = "10.10.0.0/24"   // node IPs 10.10.0.11, .12, ...
	ClusterCIDR  = "10.244.0.0/16"  // node I gets 10.244.I.0/24
	ServiceCIDR  = "10.96.0.0/12"   // the API server allocates ClusterIPs here
	ExternalCIDR = "203.0.113.0/24" // documentation range: never a real network
	ExternalIP   = "203.0.113.10"
	VXLANID      = 1
	VXLANPort    = 4789
	// LabelLab marks every API object the lab registers with the lab name.
	LabelLab = "palisade.dev/lab"
)

// Interface names inside lab namespaces (names never leave their namespace).
const (
	IfUplink = "eth0"   // node and external host: the underlay side
	IfBridge = "cbr0"   // node: pod bridge, gateway .1 of the pod CIDR
	IfVXLAN  = "vxlan0" // node, vxlan mode
	IfPod    = "eth0"   // pod side of the pod's veth
	IfUnder  = "br0"    // underlay namespace: the bridge joining nodes
)

// Config describes a lab.
type Config struct {
	// Name tells concurrent labs apart: 1-16 lower-case letters and digits.
	// Default "lab".
	Name string
	// Nodes is the number of nodes (default 2, at most 200).
	Nodes int
	// Mode is direct (default) or vxlan.
	Mode Mode
	// App is the application to deploy ("sockshop", "netpol"), a
	// comma-separated list of them ("sockshop,netpol"), or "" for none.
	App string
	// Replicas is each deployment's replica count (default 1).
	Replicas int
	// RestConfig or Kubeconfig (a path) reach the API server. One is required.
	RestConfig *rest.Config
	Kubeconfig string
	// StateDir holds state.json (default /run/palisade/lab/NAME).
	StateDir string
	// ProbePeriod is the kubelet-style probe period (default 10s; <0 off).
	ProbePeriod time.Duration
	// Logger receives progress; default slog.Default().
	Logger *slog.Logger
	// WaitNamespacesGone makes Down wait until the namespace controller has
	// removed the apps' namespaces (5–7 s: the controller waits 5 s before
	// acting on a deletion). Without it Down returns once they are being
	// deleted; the next Up waits for them, and `lab down` (Remove) always
	// waits. Tests whose API server goes away with them need not wait.
	WaitNamespacesGone bool
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

func (c *Config) defaults() error {
	if c.Name == "" {
		c.Name = "lab"
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("lab name %q: use 1-16 lower-case letters and digits (no '-', so one lab's prefix never matches another's)", c.Name)
	}
	if c.Nodes == 0 {
		c.Nodes = 2
	}
	if c.Nodes < 1 || c.Nodes > 200 {
		return fmt.Errorf("nodes: %d out of range 1-200", c.Nodes)
	}
	switch c.Mode {
	case "":
		c.Mode = ModeDirect
	case ModeDirect, ModeVXLAN:
	default:
		return fmt.Errorf("mode %q: want direct or vxlan (IPIP and GENEVE are not in this kernel)", c.Mode)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.StateDir == "" {
		c.StateDir = StateDir(c.Name)
	}
	if c.ProbePeriod == 0 {
		c.ProbePeriod = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// StateDir is where a lab named name keeps state.json by default.
func StateDir(name string) string { return filepath.Join("/run/palisade/lab", name) }

// Prefix is the start of every namespace name of the lab called name.
func Prefix(name string) string { return "pal-" + name + "-" }

func nsUnderlay(lab string) string      { return Prefix(lab) + "underlay" }
func nsExternal(lab string) string      { return Prefix(lab) + "ext" }
func nsNode(lab string, i int) string   { return fmt.Sprintf("%snode%d", Prefix(lab), i) }
func nsPod(lab, ns, pod string) string  { return Prefix(lab) + "pod-" + ns + "-" + pod }
func nodeName(lab string, i int) string { return fmt.Sprintf("%s-node%d", lab, i) }
func nodeIP(i int) netip.Addr           { return netip.AddrFrom4([4]byte{10, 10, 0, byte(10 + i)}) }
func podCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
}
func podGateway(i int) netip.Addr          { return netip.AddrFrom4([4]byte{10, 244, byte(i), 1}) }
func vxlanAddr(i int) netip.Addr           { return netip.AddrFrom4([4]byte{10, 244, byte(i), 0}) }
func vxlanMAC(i int) []byte                { return []byte{0x02, 0x50, 0x4c, 0x00, byte(i >> 8), byte(i)} }
func bridgeMAC(i int) []byte               { return []byte{0x02, 0x50, 0x4c, 0x01, byte(i >> 8), byte(i)} }
func underlayVeth(i int) string            { return fmt.Sprintf("veth-node%d", i) }
func mustPrefix(s string) netip.Prefix     { return netip.MustParsePrefix(s) }
func prefixLen(p netip.Prefix) int         { return p.Bits() }
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
