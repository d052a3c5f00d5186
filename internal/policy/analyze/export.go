package analyze

import "github.com/palisade-dev/palisade/internal/inventory"

// ServicePortFor is the service port of svc whose target port a DNAT'd
// flow reached on the backend ip:port (what Input sets as ServicePort), for
// callers that resolve a flow's ends themselves (internal/discovery).
func ServicePortFor(svc *inventory.Workload, ip string, port uint16) uint16 {
	return servicePortFor(svc, ip, port)
}
