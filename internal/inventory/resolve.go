package inventory

import (
	"net/netip"
	"strconv"
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
// of its endpoints' IP and target port.
func (inv *Inventory) ServiceFor(ip string, port uint16, proto string, t time.Time) (*Workload, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	holder, held := inv.Lookup(a, t)
	if held && holder.Kind == KindService {
		for _, p := range holder.Ports {
			if uint16(p.Port) == port && protoMatch(p.Protocol, proto) {
				return holder, true
			}
		}
		return nil, false
	}
	isNode := held && holder.Kind == KindNode
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	for _, inc := range inv.services {
		w := inc.at(t)
		if w.Kind != KindService || !w.Alive(t) {
			continue
		}
		if isNode && w.Cluster == holder.Cluster {
			for _, p := range w.Ports {
				if p.NodePort != 0 && uint16(p.NodePort) == port && protoMatch(p.Protocol, proto) {
					return w, true
				}
			}
			continue
		}
		for _, e := range w.Endpoints {
			if e.IP != ip {
				continue
			}
			for _, p := range e.Ports {
				if uint16(p) == port {
					return w, true
				}
			}
			for _, p := range w.Ports {
				if p.TargetPort == strconv.Itoa(int(port)) {
					return w, true
				}
			}
		}
	}
	return nil, false
}

func protoMatch(svcProto, proto string) bool {
	return svcProto == "" || proto == "" || strings.EqualFold(svcProto, proto)
}
