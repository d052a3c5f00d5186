package policy

import "github.com/palisade-dev/palisade/internal/inventory"

// namedPorts returns the numbers a named port has on a destination workload:
// the container ports of that name and protocol (a pod, as Kubernetes
// resolves a NetworkPolicy's named port per destination pod), or the ports
// of the service ports of that name (a service).
func namedPorts(w *inventory.Workload, name string, proto Proto) []uint16 {
	if w == nil {
		return nil
	}
	var out []uint16
	for _, c := range w.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && protoIs(cp.Protocol, proto) {
				out = append(out, uint16(cp.Port))
			}
		}
	}
	for _, sp := range w.Ports {
		if sp.Name == name && protoIs(sp.Protocol, proto) {
			out = append(out, uint16(sp.Port))
		}
	}
	return out
}
