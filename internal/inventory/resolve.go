package inventory

import (
	"net/netip"
	"strings"
	"time"
)

// WorkloadAt is Lookup for a textual IP; it lets the inventory serve as the
// flow pipeline's resolver.
func (inv *Inventory) WorkloadAt(ip string, t time.Time) (*Workload, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	return inv.Lookup(a, t)
}

// ServiceFor returns the service that ip:port belonged to at t: its
// cluster IP and service port, a node IP and one of its node ports, or one
// of its endpoints' IP and target port (any protocol: endpoints name
// ports only). When several services match (a pod behind two services),
// the first by workload ID answers, the older life of an ID first.
//
// A cluster IP is found through its lease, like any address; node ports
// and endpoints through the service index, which lists every life of a
// service (replaced and deleted ones too) under the endpoint addresses
// and node ports its versions name: the answer is the version in force at
// t, exactly as a walk over every service would give, for the cost of
// the few services that ever named the address.
func (inv *Inventory) ServiceFor(ip string, port uint16, proto string, t time.Time) (*Workload, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	holder, held := inv.lookup(a, t)
	if held && holder.Kind == KindService {
		for _, p := range holder.Ports {
			if uint16(p.Port) == port && protoMatch(p.Protocol, proto) {
				return holder, true
			}
		}
		return nil, false
	}
	// A node's address: the node ports of its cluster's services, and
	// the endpoints of other clusters' services.
	isNode := held && holder.Kind == KindNode
	var best *Workload
	var bestLife *incarnation
	if isNode {
		for _, inc := range inv.services.byNodePort[nodePortKey{holder.Cluster, port}] {
			w, ok := serviceAt(inc, t)
			if ok && w.Cluster == holder.Cluster && nodePortMatch(w, port, proto) {
				best, bestLife = w, inc
				break
			}
		}
	}
	for _, inc := range inv.services.byEndpoint[ip] {
		if bestLife != nil && serviceCompare(inc, bestLife) >= 0 {
			break
		}
		w, ok := serviceAt(inc, t)
		if !ok || isNode && w.Cluster == holder.Cluster {
			continue
		}
		if inv.services.endpointMatch(w, ip, port) {
			best = w
			break
		}
	}
	return best, best != nil
}

// nodePortMatch reports whether w has port as a node port for proto.
func nodePortMatch(w *Workload, port uint16, proto string) bool {
	for _, p := range w.Ports {
		if p.NodePort != 0 && uint16(p.NodePort) == port && protoMatch(p.Protocol, proto) {
			return true
		}
	}
	return false
}

func protoMatch(svcProto, proto string) bool {
	return svcProto == "" || proto == "" || strings.EqualFold(svcProto, proto)
}
