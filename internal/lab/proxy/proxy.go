// Package proxy is the lab's kube-proxy: it turns Services and their ready
// endpoints into iptables NAT rules inside one node's network namespace, in
// the same shape kube-proxy's iptables mode uses (a services chain, one chain
// per service port choosing an endpoint at random, one chain per endpoint
// doing the DNAT, a mark that asks POSTROUTING to masquerade).
//
// Rules are plain text built by Rules, so they can be read and tested without
// a namespace; Syncer applies them with iptables-restore --noflush, touching
// only the PAL-* chains and the jumps into them, never anyone else's rules.
package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"sort"
	"strings"

	"github.com/palisade-dev/palisade/internal/netns"
)

// MasqMark is the packet mark that asks PAL-POSTROUTING to masquerade
// (kube-proxy's 0x4000).
const MasqMark = "0x4000/0x4000"

// Top-level chains owned by the lab in the nat and filter tables.
const (
	chainServices    = "PAL-SERVICES"
	chainNodePorts   = "PAL-NODEPORTS"
	chainPostrouting = "PAL-POSTROUTING"
	chainMarkMasq    = "PAL-MARK-MASQ"
	chainFilter      = "PAL-FILTER"
)

// Endpoint is one backend of a service port.
type Endpoint struct {
	IP   string
	Port int32
}

// ServicePort is one port of one Service with its ready endpoints.
type ServicePort struct {
	Namespace, Name, PortName string
	ClusterIP                 string // "" or "None": no ClusterIP rules
	Port                      int32
	NodePort                  int32 // 0: none
	Protocol                  string
	Endpoints                 []Endpoint
}

func (p ServicePort) id() string {
	return fmt.Sprintf("%s/%s:%s", p.Namespace, p.Name, p.PortName)
}

// Node is what the rules of one node depend on besides the services.
type Node struct {
	// ClusterCIDR covers every pod CIDR; pod traffic leaving it is
	// masqueraded to the node's address (pod egress SNAT).
	ClusterCIDR string
}

// chainName is a stable iptables chain name (<= 28 characters) for key.
func chainName(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// Rules returns the iptables-restore input for the node and the names of the
// per-service chains it declares. Chains in stale that are no longer needed
// are deleted by the same input.
func Rules(node Node, ports []ServicePort, stale map[string]bool) (string, map[string]bool) {
	ports = append([]ServicePort(nil), ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].id() < ports[j].id() })
	chains := map[string]bool{}
	var decl, rules, filter strings.Builder
	add := func(format string, a ...any) { fmt.Fprintf(&rules, format+"\n", a...) }

	add("-A %s -m mark ! --mark %s -j RETURN", chainPostrouting, MasqMark)
	add("-A %s -j MARK --xor-mark 0x4000", chainPostrouting)
	add("-A %s -j MASQUERADE", chainPostrouting)
	add("-A %s -j MARK --or-mark 0x4000", chainMarkMasq)

	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		hasIP := p.ClusterIP != "" && p.ClusterIP != "None"
		if !hasIP {
			continue
		}
		comment := fmt.Sprintf(`-m comment --comment "%s"`, p.id())
		if len(p.Endpoints) == 0 {
			fmt.Fprintf(&filter, "-A %s -d %s/32 -p %s -m %s --dport %d %s -j REJECT --reject-with icmp-port-unreachable\n",
				chainFilter, p.ClusterIP, proto, proto, p.Port, comment)
			continue
		}
		svc := chainName("PAL-SVC-", p.id()+"/"+proto)
		chains[svc] = true
		add("-A %s ! -s %s -d %s/32 -p %s -m %s --dport %d %s -j %s",
			chainServices, node.ClusterCIDR, p.ClusterIP, proto, proto, p.Port, comment, chainMarkMasq)
		add("-A %s -d %s/32 -p %s -m %s --dport %d %s -j %s",
			chainServices, p.ClusterIP, proto, proto, p.Port, comment, svc)
		if p.NodePort != 0 {
			add("-A %s -p %s -m %s --dport %d %s -j %s", chainNodePorts, proto, proto, p.NodePort, comment, chainMarkMasq)
			add("-A %s -p %s -m %s --dport %d %s -j %s", chainNodePorts, proto, proto, p.NodePort, comment, svc)
		}
		eps := append([]Endpoint(nil), p.Endpoints...)
		sort.Slice(eps, func(i, j int) bool { return eps[i].IP < eps[j].IP })
		for i, ep := range eps {
			sep := chainName("PAL-SEP-", fmt.Sprintf("%s/%s/%s:%d", p.id(), proto, ep.IP, ep.Port))
			chains[sep] = true
			if left := len(eps) - i; left > 1 {
				add("-A %s %s -m statistic --mode random --probability %.11f -j %s", svc, comment, 1/float64(left), sep)
			} else {
				add("-A %s %s -j %s", svc, comment, sep)
			}
			add("-A %s -s %s/32 %s -j %s", sep, ep.IP, comment, chainMarkMasq)
			add("-A %s -p %s -m %s %s -j DNAT --to-destination %s:%d", sep, proto, proto, comment, ep.IP, ep.Port)
		}
	}
	// Node ports are matched last, on any address of the node.
	add("-A %s -m addrtype --dst-type LOCAL -j %s", chainServices, chainNodePorts)

	names := make([]string, 0, len(chains))
	for c := range chains {
		names = append(names, c)
	}
	for c := range stale {
		if !chains[c] {
			names = append(names, c)
		}
	}
	sort.Strings(names)
	decl.WriteString("*nat\n")
	for _, c := range append([]string{chainServices, chainNodePorts, chainPostrouting, chainMarkMasq}, names...) {
		fmt.Fprintf(&decl, ":%s - [0:0]\n", c)
	}
	decl.WriteString(rules.String())
	for _, c := range names {
		if !chains[c] {
			fmt.Fprintf(&decl, "-X %s\n", c)
		}
	}
	decl.WriteString("COMMIT\n*filter\n")
	fmt.Fprintf(&decl, ":%s - [0:0]\n%sCOMMIT\n", chainFilter, filter.String())
	return decl.String(), chains
}

// Install creates the lab's top-level chains in the namespace at nsPath and
// hooks them into the built-in chains, plus the pod egress masquerade rule.
// Call it once per node namespace, before the first Sync.
func Install(nsPath string, node Node) error {
	in := fmt.Sprintf(`*nat
:%[1]s - [0:0]
:%[2]s - [0:0]
:%[3]s - [0:0]
:%[4]s - [0:0]
-A PREROUTING -m comment --comment "palisade lab services" -j %[1]s
-A OUTPUT -m comment --comment "palisade lab services" -j %[1]s
-A POSTROUTING -m comment --comment "palisade lab pod egress SNAT" -s %[6]s ! -d %[6]s -j MASQUERADE
-A POSTROUTING -m comment --comment "palisade lab masquerade" -j %[3]s
COMMIT
*filter
:%[5]s - [0:0]
-A OUTPUT -m comment --comment "palisade lab services" -j %[5]s
-A FORWARD -m comment --comment "palisade lab services" -j %[5]s
-A INPUT -m comment --comment "palisade lab services" -j %[5]s
COMMIT
`, chainServices, chainNodePorts, chainPostrouting, chainMarkMasq, chainFilter, node.ClusterCIDR)
	_, err := netns.Output(nsPath, in, "iptables-restore", "--noflush", "-w")
	return err
}

// Syncer keeps one node namespace's service rules equal to the services it is
// given. It is not safe for concurrent use.
type Syncer struct {
	NSPath string
	Node   Node
	chains map[string]bool
}

// Sync replaces the node's service rules with the rules for ports.
func (s *Syncer) Sync(ports []ServicePort) error {
	in, chains := Rules(s.Node, ports, s.chains)
	if out, err := netns.Output(s.NSPath, in, "iptables-restore", "--noflush", "-w"); err != nil {
		return fmt.Errorf("sync service rules: %w (%s)", err, out)
	}
	s.chains = chains
	return nil
}
