// Package agenttest builds small network-namespace topologies for the
// agent's tests and benchmarks: "node" namespaces with a bridge and pod veths,
// joined by a direct veth uplink or a VXLAN tunnel over it, and real traffic
// generated from inside the pod namespaces.
//
// It needs root. Namespaces are named pal-agt-<random>-<name> and removed
// in t.Cleanup.
package agenttest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/netns"
)

// Lab is a set of namespaces created by one test.
type Lab struct {
	t      testing.TB
	Prefix string
	made   []string
}

// New returns an empty lab; it fails the test (never skips) if not root or
// if `ip` is missing, since CI runs these tests as root.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("agenttest: needs root (network namespaces, tc, conntrack)")
	}
	for _, tool := range []string{"ip", "iptables", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("agenttest: %s not found: %v (apt-get install iproute2 iptables util-linux)", tool, err)
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &Lab{t: t, Prefix: "pal-agt-" + hex.EncodeToString(b)}
	t.Cleanup(l.Close)
	return l
}

// NS creates a namespace and returns its full name.
func (l *Lab) NS(name string) string {
	l.t.Helper()
	full := l.Prefix + "-" + name
	l.Run("ip", "netns", "add", full)
	l.made = append(l.made, full)
	l.Exec(full, "ip", "link", "set", "lo", "up")
	return full
}

// Path is the bind-mount path of a namespace created by NS.
func Path(ns string) string { return "/run/netns/" + ns }

// Close deletes every namespace the lab made.
func (l *Lab) Close() {
	for i := len(l.made) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "del", l.made[i]).Run()
	}
	l.made = nil
}

// Run runs a command in the test's namespace, failing the test on error.
func (l *Lab) Run(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs a command inside namespace ns.
func (l *Lab) Exec(ns string, args ...string) string {
	l.t.Helper()
	return l.Run("nsenter", append([]string{"--net=" + Path(ns), "--"}, args...)...)
}

// Do runs fn on an OS thread switched into namespace ns. Sockets fn creates
// belong to ns and keep working after Do returns.
func Do(ns string, fn func() error) error { return netns.Do(Path(ns), fn) }

// Pod is a pod namespace with its veth to the node.
type Pod struct {
	Name     string // short name, e.g. "p1"
	NS       string // namespace name
	IP       string
	HostVeth string // host-side veth name in the node namespace
}

// Node is a node namespace.
type Node struct {
	Name   string
	NS     string
	Uplink string // "eth0"
	IP     string // uplink address
	Tunnel string // "vxlan0" in vxlan mode
	Bridge string
	Pods   []*Pod
	mtu    int
}

// Cluster is two nodes joined by a veth uplink, pods on bridges.
type Cluster struct {
	Mode  string // "direct" or "vxlan"
	Nodes []*Node
}

// Pod returns the pod with the given short name.
func (c *Cluster) Pod(name string) *Pod {
	for _, n := range c.Nodes {
		for _, p := range n.Pods {
			if p.Name == name {
				return p
			}
		}
	}
	return nil
}

// TwoNodes builds node1 (pods p1, p2 on 10.244.1.0/24) and node2 (pod p3 on
// 10.244.2.0/24), uplinks 10.0.0.1 and 10.0.0.2. In "vxlan" mode the pod
// subnets route over vxlan0 (VNI 42, 10.245.0.x), else directly over eth0.
func (l *Lab) TwoNodes(mode string) *Cluster {
	l.t.Helper()
	c := &Cluster{Mode: mode}
	n1 := l.node("node1", 1)
	n2 := l.node("node2", 2)
	c.Nodes = []*Node{n1, n2}
	if mode == "vxlan" {
		// Pod MTU leaves room for the 50-byte VXLAN header, as CNIs do.
		n1.mtu, n2.mtu = 1450, 1450
	}
	l.pod(n1, "p1", 10)
	l.pod(n1, "p2", 11)
	l.pod(n2, "p3", 10)

	// Uplink: one veth pair between the two node namespaces.
	tmp1, tmp2 := l.Prefix[8:]+"a", l.Prefix[8:]+"b"
	l.Run("ip", "link", "add", tmp1, "netns", n1.NS, "type", "veth", "peer", "name", tmp2, "netns", n2.NS)
	for _, x := range []struct {
		n   *Node
		tmp string
	}{{n1, tmp1}, {n2, tmp2}} {
		l.Exec(x.n.NS, "ip", "link", "set", x.tmp, "name", "eth0")
		l.Exec(x.n.NS, "ip", "addr", "add", x.n.IP+"/24", "dev", "eth0")
		l.Exec(x.n.NS, "ip", "link", "set", "eth0", "up")
		x.n.Uplink = "eth0"
	}
	for i, n := range c.Nodes {
		other := c.Nodes[1-i]
		otherPods := fmt.Sprintf("10.244.%d.0/24", 2-i)
		if mode == "vxlan" {
			n.Tunnel = "vxlan0"
			l.Exec(n.NS, "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "42", "dstport", "4789",
				"local", n.IP, "remote", other.IP, "dev", "eth0")
			l.Exec(n.NS, "ip", "addr", "add", fmt.Sprintf("10.245.0.%d/24", i+1), "dev", "vxlan0")
			l.Exec(n.NS, "ip", "link", "set", "vxlan0", "up")
			l.Exec(n.NS, "ip", "route", "add", otherPods, "via", fmt.Sprintf("10.245.0.%d", 2-i), "dev", "vxlan0")
		} else {
			l.Exec(n.NS, "ip", "route", "add", otherPods, "via", other.IP, "dev", "eth0")
		}
	}
	return c
}

func (l *Lab) node(name string, idx int) *Node {
	n := &Node{Name: name, NS: l.NS(name), IP: fmt.Sprintf("10.0.0.%d", idx), Bridge: "br0"}
	if err := Do(n.NS, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0) }); err != nil {
		l.t.Fatalf("ip_forward in %s: %v", n.NS, err)
	}
	l.Exec(n.NS, "ip", "link", "add", "br0", "type", "bridge")
	l.Exec(n.NS, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", idx), "dev", "br0")
	l.Exec(n.NS, "ip", "link", "set", "br0", "up")
	return n
}

// AddPod plugs a new pod into node n's bridge with address .host.
func (l *Lab) AddPod(n *Node, name string, host int) *Pod { return l.pod(n, name, host) }

// RemovePod deletes a pod's namespace (its veth goes with it).
func (l *Lab) RemovePod(p *Pod) { l.Run("ip", "netns", "del", p.NS) }

func (l *Lab) pod(n *Node, name string, host int) *Pod {
	p := &Pod{Name: name, NS: l.NS(name), HostVeth: "veth" + name}
	subnet := n.IP[len(n.IP)-1:]
	p.IP = fmt.Sprintf("10.244.%s.%d", subnet, host)
	l.Run("ip", "link", "add", p.HostVeth, "netns", n.NS, "type", "veth", "peer", "name", "eth0", "netns", p.NS)
	l.Exec(n.NS, "ip", "link", "set", p.HostVeth, "master", "br0", "up")
	l.Exec(p.NS, "ip", "addr", "add", p.IP+"/24", "dev", "eth0")
	if n.mtu > 0 {
		l.Exec(n.NS, "ip", "link", "set", p.HostVeth, "mtu", fmt.Sprint(n.mtu))
		l.Exec(p.NS, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(n.mtu))
	}
	l.Exec(p.NS, "ip", "link", "set", "eth0", "up")
	l.Exec(p.NS, "ip", "route", "add", "default", "via", "10.244."+subnet+".1")
	n.Pods = append(n.Pods, p)
	return p
}
