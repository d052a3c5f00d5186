package policy

import "github.com/palisade-dev/palisade/internal/inventory"

// namedPorts returns the numbers a named port has on a destination
// workload: a pod's container ports of that name and protocol (as
// Kubernetes resolves a NetworkPolicy's or a service's named port, per
// pod), or a service's ports of that name.
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

// hasNamedPort reports whether port is w's port of that name and protocol,
// without allocating (namedPorts' test for one port).
func hasNamedPort(w *inventory.Workload, name string, proto Proto, port uint16) bool {
	if w == nil {
		return false
	}
	for _, c := range w.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && uint16(cp.Port) == port && protoIs(cp.Protocol, proto) {
				return true
			}
		}
	}
	return servicePortNamed(w, name, proto, port)
}
