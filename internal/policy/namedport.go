package policy

import "github.com/palisade-dev/palisade/internal/inventory"

// namedPorts returns the numbers a named port has on a destination workload:
// the container ports of that name and protocol (a pod), or the target
// ports of the service ports of that name (a service).
func namedPorts(w *inventory.Workload, name string, proto Proto) []uint16 {
	if w == nil {
		return nil
	}
	var out []uint16
	for _, sp := range w.Ports {
		if sp.Name == name && protoIs(sp.Protocol, proto) {
			out = append(out, uint16(sp.Port))
		}
	}
	return out
}
