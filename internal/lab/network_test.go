package lab

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/lab/proxy"
	"github.com/palisade-dev/palisade/internal/netns"
)

// requireRoot fails the test when not run as root: the lab's tests must
// run (make test and .ci/run run as root), never be skipped.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lab tests need root (network namespaces, veths, iptables): run `make test` as root")
	}
}

func testName(t testing.TB, tag string) string {
	return fmt.Sprintf("t%s%d", tag, os.Getpid()%100000)
}

// TestNetworkWithoutAPI builds the network and NAT by hand (no API server):
// pods on two nodes, a ClusterIP and NodePort service, in both modes.
func TestNetworkWithoutAPI(t *testing.T) {
	requireRoot(t)
	for _, mode := range []Mode{ModeDirect, ModeVXLAN} {
		t.Run(string(mode), func(t *testing.T) {
			name := testName(t, "n"+string(mode[0]))
			nw, err := buildNetwork(name, mode, 2)
			t.Cleanup(func() {
				nw.close()
				if err := removeAll(name); err != nil {
					t.Error(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			var pods []*PodInfo
			for i, nd := range []*node{nw.nodes[0], nw.nodes[0], nw.nodes[1]} {
				ip, err := nd.allocIP()
				if err != nil {
					t.Fatal(err)
				}
				pi, err := nw.plugPod(nd, "default", fmt.Sprintf("p%d", i), ip)
				if err != nil {
					t.Fatal(err)
				}
				srv, err := app.Listen(pi.NetNSPath, pi.Name, []int32{80})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Close() })
				pods = append(pods, pi)
			}
			ext, err := app.Listen(nw.ext.path, "ext", []int32{666})
			if err != nil {
				t.Fatal(err)
			}
			defer ext.Close()
			ports := []proxy.ServicePort{
				{Namespace: "default", Name: "one", PortName: "http", ClusterIP: "10.96.0.10", Port: 8080, Protocol: "TCP",
					Endpoints: []proxy.Endpoint{{IP: pods[2].IP, Port: 80}}},
				{Namespace: "default", Name: "self", PortName: "http", ClusterIP: "10.96.0.11", Port: 80, Protocol: "TCP", NodePort: 30080,
					Endpoints: []proxy.Endpoint{{IP: pods[0].IP, Port: 80}}},
				{Namespace: "default", Name: "remote", PortName: "http", ClusterIP: "10.96.0.12", Port: 80, Protocol: "TCP", NodePort: 30081,
					Endpoints: []proxy.Endpoint{{IP: pods[2].IP, Port: 80}}},
				{Namespace: "default", Name: "empty", PortName: "http", ClusterIP: "10.96.0.13", Port: 80, Protocol: "TCP"},
			}
			for _, nd := range nw.nodes {
				if err := nd.proxy.Sync(ports); err != nil {
					t.Fatal(err)
				}
			}
			get := func(from, addr, want string) {
				t.Helper()
				body, err := app.Get(from, addr, 3*time.Second)
				if err != nil {
					t.Errorf("%s -> %s: %v", from, addr, err)
					return
				}
				if !strings.Contains(body, want) {
					t.Errorf("%s -> %s: answer %q, want it to mention %q", from, addr, body, want)
				}
			}
			get(pods[0].NetNSPath, pods[1].IP+":80", "p1 port 80 from "+pods[0].IP) // same node
			get(pods[0].NetNSPath, pods[2].IP+":80", "p2 port 80 from "+pods[0].IP) // cross node, no NAT
			get(pods[0].NetNSPath, "10.96.0.10:8080", "p2 port 80")                 // ClusterIP, remote
			get(pods[0].NetNSPath, "10.96.0.11:80", "p0 port 80")                   // hairpin
			get(pods[2].NetNSPath, ExternalIP+":666", "from "+nodeIP(2).String())   // egress SNAT
			get(nw.ext.path, nodeIP(1).String()+":30080", "p0 port 80 from "+podGateway(1).String())
			remoteSrc := nodeIP(1).String()
			if mode == ModeVXLAN {
				remoteSrc = vxlanAddr(1).String()
			}
			get(nw.ext.path, nodeIP(1).String()+":30081", "p2 port 80 from "+remoteSrc)
			get(nw.nodes[1].ns.path, "10.96.0.11:80", "p0 port 80") // node → ClusterIP
			// A port nobody listens on is refused, a service without endpoints too.
			for _, addr := range []string{pods[2].IP + ":81", "10.96.0.13:80"} {
				if _, err := app.Dial(pods[0].NetNSPath, "", addr, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("dial %s: %v, want connection refused", addr, err)
				}
			}
			// The external host reaches pods by their IP (routed pod CIDRs),
			// unSNATed, on either node.
			get(nw.ext.path, pods[0].IP+":80", "p0 port 80 from "+ExternalIP)
			get(nw.ext.path, pods[2].IP+":80", "p2 port 80 from "+ExternalIP)
			// No interface of the lab has IPv6 (no autoconfiguration noise:
			// router solicitations, MLD reports, DAD).
			for _, path := range []string{pods[0].NetNSPath, nw.nodes[0].ns.path, nw.nodes[1].ns.path, nw.ext.path, nw.underlay.path} {
				out, err := netns.Output(path, "", "ip", "-6", "-o", "addr", "show", "scope", "link")
				if err != nil || strings.TrimSpace(out) != "" {
					t.Errorf("IPv6 link-local addresses in %s: %v %s", path, err, out)
				}
			}
			// Removing a service removes its chains.
			for _, nd := range nw.nodes {
				if err := nd.proxy.Sync(ports[:1]); err != nil {
					t.Fatal(err)
				}
			}
			out, err := netns.Output(nw.nodes[0].ns.path, "", "iptables-save", "-t", "nat")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(out, ":PAL-SVC-") != 1 || strings.Count(out, ":PAL-SEP-") != 1 {
				t.Errorf("stale chains after sync:\n%s", out)
			}
		})
	}
}
