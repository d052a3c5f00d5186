package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/lab/proxy"
	"github.com/palisade-dev/palisade/internal/netns"
)

// nsConn is an open handle on one lab namespace plus a netlink handle in it.
type nsConn struct {
	name, path string
	fd         vns.NsHandle
	nl         *netlink.Handle
}

// createNS creates a lab namespace. Interfaces made in it later get no
// IPv6: the lab is IPv4, and IPv6 autoconfiguration on every veth coming up
// (router solicitations, MLD reports, duplicate address detection) would
// fill the flow records with interface bring-up noise instead of the app.
func createNS(name string) (*nsConn, error) {
	path, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	if err := netns.Sysctl(path, "net/ipv6/conf/default/disable_ipv6", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = netns.Delete(name)
		return nil, fmt.Errorf("netns %s: turning IPv6 off: %w", name, err)
	}
	return openNS(name, path)
}

func openNS(name, path string) (*nsConn, error) {
	fd, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return &nsConn{name: name, path: path, fd: fd, nl: h}, nil
}

func (c *nsConn) close() {
	if c == nil {
		return
	}
	c.nl.Close()
	c.fd.Close()
}

// addVeth creates a veth pair whose first end (name) is in c and whose peer
// (peerName) is created directly in peer: neither end ever exists in the
// root namespace. It returns the first end, up.
func (c *nsConn) addVeth(name string, peer *nsConn, peerName string, mtu int) (netlink.Link, error) {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peer.fd)),
	}
	if err := c.nl.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("veth %s/%s - %s/%s: %w", c.name, name, peer.name, peerName, err)
	}
	return c.nl.LinkByName(name)
}

// setAddrUp gives link addr/bits and brings it up.
func (c *nsConn) setAddrUp(link netlink.Link, addr netip.Addr, bits int) error {
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}
	if err := c.nl.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", ipn, link.Attrs().Name, c.name, err)
	}
	if err := c.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("up %s in %s: %w", link.Attrs().Name, c.name, err)
	}
	return nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// node is one lab node: its namespace, bridge, IPAM and proxy.
type node struct {
	idx    int
	info   NodeInfo
	ns     *nsConn
	bridge netlink.Link
	mtu    int
	proxy  *proxy.Syncer

	mu   sync.Mutex
	used map[netip.Addr]bool
}

// network is the part of the lab that needs no API server.
type network struct {
	name     string
	mode     Mode
	underlay *nsConn
	ext      *nsConn
	nodes    []*node
}

// buildNetwork creates the underlay, the external host and n nodes.
func buildNetwork(name string, mode Mode, n int) (*network, error) {
	nw := &network{name: name, mode: mode}
	var err error
	if nw.underlay, err = createNS(nsUnderlay(name)); err != nil {
		return nw, err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: IfUnder}}
	if err := nw.underlay.nl.LinkAdd(br); err != nil {
		return nw, fmt.Errorf("underlay bridge: %w", err)
	}
	if err := nw.underlay.nl.LinkSetUp(br); err != nil {
		return nw, err
	}
	// The external host: on the underlay, in a documentation range, with a
	// route to the node IPs (pods' egress reaches it SNATed to their node)
	// and, once the nodes exist, to each node's pod CIDR.
	if nw.ext, err = createNS(nsExternal(name)); err != nil {
		return nw, err
	}
	if err := nw.plugUnderlay("veth-ext", nw.ext, netip.MustParseAddr(ExternalIP), 24); err != nil {
		return nw, err
	}
	if err := nw.ext.routeDev(mustPrefix(UnderlayCIDR), IfUplink); err != nil {
		return nw, err
	}
	mtu := 1500
	if mode == ModeVXLAN {
		mtu = 1450
	}
	errs := make([]error, n)
	nw.nodes = make([]*node, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { nw.nodes[i], errs[i] = nw.buildNode(i+1, mtu) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nw, err
	}
	for _, nd := range nw.nodes {
		if err := nw.routePeers(nd); err != nil {
			return nw, err
		}
		// The external host routes each pod CIDR to its node, as a router
		// of a routed (BGP-style) pod network would, in both modes: pods
		// are reachable from outside by their own IP, unSNATed, so
		// ipBlock policies can be tried from the external host.
		r := &netlink.Route{Dst: ipnet(podCIDR(nd.idx)), Gw: nodeIP(nd.idx).AsSlice()}
		if err := nw.ext.nl.RouteAdd(r); err != nil {
			return nw, fmt.Errorf("route %s via %s on the external host: %w", podCIDR(nd.idx), nodeIP(nd.idx), err)
		}
	}
	return nw, nil
}

// plugUnderlay joins c to the underlay bridge with eth0 = addr/bits.
func (nw *network) plugUnderlay(vethName string, c *nsConn, addr netip.Addr, bits int) error {
	under, err := nw.underlay.addVeth(vethName, c, IfUplink, 1500)
	if err != nil {
		return err
	}
	br, err := nw.underlay.nl.LinkByName(IfUnder)
	if err != nil {
		return err
	}
	if err := nw.underlay.nl.LinkSetMaster(under, br); err != nil {
		return fmt.Errorf("attach %s to underlay bridge: %w", vethName, err)
	}
	if err := nw.underlay.nl.LinkSetUp(under); err != nil {
		return err
	}
	up, err := c.nl.LinkByName(IfUplink)
	if err != nil {
		return err
	}
	return c.setAddrUp(up, addr, bits)
}

func (c *nsConn) routeDev(dst netip.Prefix, dev string) error {
	l, err := c.nl.LinkByName(dev)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst), Scope: netlink.SCOPE_LINK}
	if err := c.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s dev %s in %s: %w", dst, dev, c.name, err)
	}
	return nil
}

func (nw *network) buildNode(i, mtu int) (*node, error) {
	c, err := createNS(nsNode(nw.name, i))
	if err != nil {
		return nil, err
	}
	nd := &node{idx: i, ns: c, mtu: mtu, used: map[netip.Addr]bool{}}
	nd.info = NodeInfo{
		Name: nodeName(nw.name, i), IP: nodeIP(i).String(), PodCIDR: podCIDR(i).String(),
		NetNS: c.name, NetNSPath: c.path, Uplink: IfUplink, Bridge: IfBridge,
		BridgeIP: podGateway(i).String(),
	}
	if err := nw.plugUnderlay(underlayVeth(i), c, nodeIP(i), prefixLen(mustPrefix(UnderlayCIDR))); err != nil {
		return nd, err
	}
	// A fixed MAC: a bridge otherwise takes its lowest port's MAC, which
	// changes as pods come and go and leaves pods' cached gateway entries
	// pointing at an address the node no longer answers on.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: IfBridge, MTU: mtu, HardwareAddr: bridgeMAC(i)}}
	if err := c.nl.LinkAdd(br); err != nil {
		return nd, fmt.Errorf("pod bridge in %s: %w", c.name, err)
	}
	if nd.bridge, err = c.nl.LinkByName(IfBridge); err != nil {
		return nd, err
	}
	if err := c.setAddrUp(nd.bridge, podGateway(i), 24); err != nil {
		return nd, err
	}
	// The node has no default route: only the service range (so node →
	// ClusterIP reaches nat OUTPUT) and the external range are on the uplink.
	if err := c.routeDev(mustPrefix(ServiceCIDR), IfUplink); err != nil {
		return nd, err
	}
	if err := c.routeDev(mustPrefix(ExternalCIDR), IfUplink); err != nil {
		return nd, err
	}
	if err := netns.Sysctl(c.path, "net/ipv4/ip_forward", "1"); err != nil {
		return nd, err
	}
	if nw.mode == ModeVXLAN {
		up, err := c.nl.LinkByName(IfUplink)
		if err != nil {
			return nd, err
		}
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: IfVXLAN, MTU: 1450, HardwareAddr: vxlanMAC(i)},
			VxlanId:      VXLANID,
			VtepDevIndex: up.Attrs().Index,
			SrcAddr:      nodeIP(i).AsSlice(),
			Port:         VXLANPort,
		}
		if err := c.nl.LinkAdd(vx); err != nil {
			return nd, fmt.Errorf("vxlan in %s: %w", c.name, err)
		}
		l, err := c.nl.LinkByName(IfVXLAN)
		if err != nil {
			return nd, err
		}
		if err := c.setAddrUp(l, vxlanAddr(i), 32); err != nil {
			return nd, err
		}
		nd.info.VXLAN, nd.info.VXLANIP = IfVXLAN, vxlanAddr(i).String()
	}
	pn := proxy.Node{ClusterCIDR: ClusterCIDR}
	if err := proxy.Install(c.path, pn); err != nil {
		return nd, err
	}
	nd.proxy = &proxy.Syncer{NSPath: c.path, Node: pn}
	return nd, nil
}

// routePeers routes every other node's pod CIDR from nd: via the peer's
// underlay IP (direct) or through vxlan0 with a static neighbour and FDB
// entry per peer (vxlan, flannel-style: no ARP or flooding over the tunnel).
func (nw *network) routePeers(nd *node) error {
	c := nd.ns
	for _, peer := range nw.nodes {
		if peer == nd {
			continue
		}
		j := peer.idx
		switch nw.mode {
		case ModeDirect:
			r := &netlink.Route{Dst: ipnet(podCIDR(j)), Gw: nodeIP(j).AsSlice()}
			if err := c.nl.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via %s in %s: %w", podCIDR(j), nodeIP(j), c.name, err)
			}
		case ModeVXLAN:
			vx, err := c.nl.LinkByName(IfVXLAN)
			if err != nil {
				return err
			}
			idx := vx.Attrs().Index
			if err := c.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				IP: vxlanAddr(j).AsSlice(), HardwareAddr: vxlanMAC(j)}); err != nil {
				return fmt.Errorf("vxlan neighbour in %s: %w", c.name, err)
			}
			if err := c.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, IP: nodeIP(j).AsSlice(), HardwareAddr: vxlanMAC(j)}); err != nil {
				return fmt.Errorf("vxlan fdb in %s: %w", c.name, err)
			}
			r := &netlink.Route{LinkIndex: idx, Dst: ipnet(podCIDR(j)), Gw: vxlanAddr(j).AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
			if err := c.nl.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via vxlan in %s: %w", podCIDR(j), c.name, err)
			}
		}
	}
	return nil
}

// allocIP takes the lowest free pod address of the node.
func (nd *node) allocIP() (netip.Addr, error) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	p := podCIDR(nd.idx)
	for a := podGateway(nd.idx).Next(); p.Contains(a) && a != lastAddr(p); a = a.Next() {
		if !nd.used[a] {
			nd.used[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s: pod CIDR %s is full", nd.info.Name, p)
}

func (nd *node) freeIP(a netip.Addr) {
	nd.mu.Lock()
	delete(nd.used, a)
	nd.mu.Unlock()
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// hostVethName is the node-side veth of a pod: stable, unique in the node
// and within the 15-character limit.
func hostVethName(ns, pod string) string {
	sum := sha256.Sum256([]byte(ns + "/" + pod))
	return "veth" + hex.EncodeToString(sum[:])[:11]
}

// plugPod creates the pod namespace and its veth, gives it ip and a
// default route to the node's bridge, with hairpin on the bridge port.
func (nw *network) plugPod(nd *node, podNS, podName string, ip netip.Addr) (*PodInfo, error) {
	name := nsPod(nw.name, podNS, podName)
	_ = netns.Delete(name) // a leftover of a pod with the same name
	c, err := createNS(name)
	if err != nil {
		return nil, err
	}
	defer c.close()
	pi := &PodInfo{Namespace: podNS, Name: podName, Node: nd.info.Name, IP: ip.String(),
		NetNS: name, NetNSPath: c.path, HostVeth: hostVethName(podNS, podName), Interface: IfPod,
		NodeNetNSPath: nd.ns.path}
	host, err := nd.ns.addVeth(pi.HostVeth, c, IfPod, nd.mtu)
	if err != nil {
		_ = netns.Delete(name)
		return nil, err
	}
	fail := func(err error) (*PodInfo, error) {
		_ = nd.ns.nl.LinkDel(host)
		_ = netns.Delete(name)
		return nil, err
	}
	if err := nd.ns.nl.LinkSetMaster(host, nd.bridge); err != nil {
		return fail(fmt.Errorf("attach %s to %s: %w", pi.HostVeth, IfBridge, err))
	}
	if err := nd.ns.nl.LinkSetHairpin(host, true); err != nil {
		return fail(fmt.Errorf("hairpin on %s: %w", pi.HostVeth, err))
	}
	if err := nd.ns.nl.LinkSetUp(host); err != nil {
		return fail(err)
	}
	eth, err := c.nl.LinkByName(IfPod)
	if err != nil {
		return fail(err)
	}
	if err := c.setAddrUp(eth, ip, 24); err != nil {
		return fail(err)
	}
	if err := c.nl.RouteAdd(&netlink.Route{Gw: podGateway(nd.idx).AsSlice()}); err != nil {
		return fail(fmt.Errorf("default route in %s: %w", name, err))
	}
	return pi, nil
}

// unplugPod removes the pod's veth and namespace.
func (nw *network) unplugPod(nd *node, pi *PodInfo) error {
	if l, err := nd.ns.nl.LinkByName(pi.HostVeth); err == nil {
		_ = nd.ns.nl.LinkDel(l)
	}
	return netns.Delete(pi.NetNS)
}

func (nw *network) close() {
	if nw == nil {
		return
	}
	nw.underlay.close()
	nw.ext.close()
	for _, nd := range nw.nodes {
		if nd != nil {
			nd.ns.close()
		}
	}
}

// removeAll deletes every namespace whose name starts with the lab's prefix.
// Deleting a namespace removes every interface and iptables rule in it.
func removeAll(name string) error {
	names, err := netns.List(Prefix(name))
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if err := netns.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
