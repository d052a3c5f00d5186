package inventory

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// serviceIndex finds, for ServiceFor, the services an address and port
// can belong to without walking every service: the service lives (of
// every incarnation, replaced and deleted ones too, so history resolves)
// that listed an address as an endpoint, or a node port, in any version
// they keep. It only narrows the candidates; ServiceFor still decides with
// the version in force at the flow's time, so an index entry a later
// version no longer justifies costs a look, never a wrong answer.
//
// Invariant: a life is listed under a key exactly when one of its kept
// versions names that key. apply adds, Compact removes what the versions
// it drops alone named. Each list is ordered by (workload ID, life's
// creation): ServiceFor answers the first service that matches in that
// order, the same whatever order the versions came in.
type serviceIndex struct {
	byEndpoint map[string][]*incarnation // endpoint IP, as the versions spell it
	byNodePort map[nodePortKey][]*incarnation
	// sorted holds, for each version with more than manyEndpoints
	// endpoints, their positions ordered by IP: a backend of a large
	// service is found by a binary search, not a scan.
	sorted map[*Workload][]int32
}

// manyEndpoints is the number of endpoints above which a version's are
// searched through serviceIndex.sorted (below, a scan is as fast).
const manyEndpoints = 16

// nodePortKey is a cluster and a node port, as ServiceFor compares it
// (the low 16 bits).
type nodePortKey struct {
	cluster string
	port    uint16
}

func newServiceIndex() serviceIndex {
	return serviceIndex{byEndpoint: map[string][]*incarnation{}, byNodePort: map[nodePortKey][]*incarnation{}, sorted: map[*Workload][]int32{}}
}

// serviceCompare orders service lives: by workload ID, then the older
// life first.
func serviceCompare(a, b *incarnation) int {
	if c := cmp.Compare(a.id, b.id); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// list adds inc to the lives listed under k, in order.
func list[K comparable](m map[K][]*incarnation, k K, inc *incarnation) {
	ls := m[k]
	if i, found := slices.BinarySearchFunc(ls, inc, serviceCompare); !found {
		m[k] = slices.Insert(ls, i, inc)
	}
}

// unlist removes inc from the lives listed under k.
func unlist[K comparable](m map[K][]*incarnation, k K, inc *incarnation) {
	ls := m[k]
	i, found := slices.BinarySearchFunc(ls, inc, serviceCompare)
	switch {
	case !found:
	case len(ls) == 1:
		delete(m, k)
	default:
		m[k] = slices.Delete(ls, i, i+1)
	}
}

// add lists inc under the keys w names; the caller holds mu.
func (x *serviceIndex) add(inc *incarnation, w *Workload) {
	for _, e := range w.Endpoints {
		list(x.byEndpoint, e.IP, inc)
	}
	for _, p := range w.Ports {
		if p.NodePort != 0 {
			list(x.byNodePort, nodePortKey{w.Cluster, uint16(p.NodePort)}, inc)
		}
	}
	if len(w.Endpoints) > manyEndpoints {
		pos := make([]int32, len(w.Endpoints))
		for i := range pos {
			pos[i] = int32(i)
		}
		slices.SortFunc(pos, func(a, b int32) int { return cmp.Compare(w.Endpoints[a].IP, w.Endpoints[b].IP) })
		x.sorted[w] = pos
	}
}

// drop unlists inc under the keys the versions gone name and the versions
// kept do not; the caller holds mu for writing.
func (x *serviceIndex) drop(inc *incarnation, gone, kept []*Workload) {
	for _, w := range gone {
		delete(x.sorted, w)
	}
	eps, nps := serviceKeys(gone)
	if len(eps) == 0 && len(nps) == 0 {
		return
	}
	keepEps, keepNps := serviceKeys(kept)
	for ip := range eps {
		if !keepEps[ip] {
			unlist(x.byEndpoint, ip, inc)
		}
	}
	for k := range nps {
		if !keepNps[k] {
			unlist(x.byNodePort, k, inc)
		}
	}
}

// serviceKeys are the endpoint addresses and node ports the versions name.
func serviceKeys(vs []*Workload) (map[string]bool, map[nodePortKey]bool) {
	eps, nps := map[string]bool{}, map[nodePortKey]bool{}
	for _, w := range vs {
		if w.Kind != KindService {
			continue
		}
		for _, e := range w.Endpoints {
			eps[e.IP] = true
		}
		for _, p := range w.Ports {
			if p.NodePort != 0 {
				nps[nodePortKey{w.Cluster, uint16(p.NodePort)}] = true
			}
		}
	}
	return eps, nps
}

// serviceAt is the version of a service life in force at t, if the
// service existed then: the version's own Created and Deleted say so, and
// a life replaced by a newer one (a new UID under the same name) ended
// when it was replaced.
func serviceAt(inc *incarnation, t time.Time) (*Workload, bool) {
	w := inc.at(t)
	if w.Kind != KindService || !w.Alive(t) || inc.superseded && !t.Before(inc.ended) {
		return nil, false
	}
	return w, true
}

// endpointMatch reports whether ip is an endpoint of w serving port: a
// port the endpoint lists, or a service port's numeric target port. The
// caller holds mu.
func (x *serviceIndex) endpointMatch(w *Workload, ip string, port uint16) bool {
	eps := w.Endpoints
	listed := false
	serves := func(e *Endpoint) bool {
		listed = true
		for _, p := range e.Ports {
			if uint16(p) == port {
				return true
			}
		}
		return false
	}
	if pos, ok := x.sorted[w]; ok {
		i, _ := slices.BinarySearchFunc(pos, ip, func(p int32, ip string) int { return cmp.Compare(eps[p].IP, ip) })
		for ; i < len(pos) && eps[pos[i]].IP == ip; i++ {
			if serves(&eps[pos[i]]) {
				return true
			}
		}
	} else {
		for i := range eps {
			if eps[i].IP == ip && serves(&eps[i]) {
				return true
			}
		}
	}
	if !listed {
		return false
	}
	var buf [5]byte
	num := strconv.AppendUint(buf[:0], uint64(port), 10)
	for _, p := range w.Ports {
		if p.TargetPort == string(num) {
			return true
		}
	}
	return false
}
