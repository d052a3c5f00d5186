package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Link is what the agent knows of an interface in the node namespace when
// deciding what it is.
type Link struct {
	Index int
	Name  string
	Type  string // netlink link type: "veth", "vxlan", "bridge", "device", ...
	// Bridged is true when the link is a port of a bridge.
	Bridged bool
	// PeerNetns names the namespace the other end of a veth lives in, when
	// it is a named namespace (/run/netns); "" otherwise.
	PeerNetns string
	// PeerNetnsID is the veth peer's namespace id as seen from the node
	// namespace (-1 when the peer is in the same namespace or unknown).
	PeerNetnsID int
}

// Classifier decides whether an interface is observed and as what. It
// returns ok=false for interfaces not to observe.
type Classifier func(l Link) (kind, pod string, ok bool)

// DefaultClassifier observes every veth and tunnel/physical interface; a
// veth that is a bridge port or leads to another namespace other than
// through Uplinks is a pod's host-side veth, named after the peer
// namespace. Loopback and bridges are skipped: a bridge only shows bridged
// traffic in promiscuous mode and would double count routed traffic.
func DefaultClassifier(uplinks []string) Classifier {
	return func(l Link) (string, string, bool) {
		switch {
		case l.Name == "lo", l.Type == "bridge":
			return "", "", false
		case slices.Contains(uplinks, l.Name):
			return "node", "", true
		case l.Type == "veth" && (l.Bridged || len(uplinks) > 0 && l.PeerNetnsID >= 0):
			return "pod", l.PeerNetns, true
		default:
			return "node", "", true
		}
	}
}

// PodVeths is a Classifier for when the pods are known (the lab's
// status, the server's inventory): pod(hostVeth) returns "namespace/name"
// for a pod's host-side veth. Other interfaces are classified by
// DefaultClassifier(uplinks).
func PodVeths(pod func(hostVeth string) (string, bool), uplinks ...string) Classifier {
	def := DefaultClassifier(uplinks)
	return func(l Link) (string, string, bool) {
		if name, ok := pod(l.Name); ok {
			return "pod", name, true
		}
		return def(l)
	}
}

// ifaces tracks the node namespace's interfaces: what each ifindex is, and
// attaches the classifier to new ones as they appear.
type ifaces struct {
	node     string
	h        *netlink.Handle
	ns       netns.NsHandle
	classify Classifier
	attach   func(ifindex int) error

	mu       sync.Mutex
	points   map[int]flow.ObservationPoint // kept after a link goes: late records
	attached map[int]bool
	nsNames  map[int]string // netns id -> /run/netns name
}

func (f *ifaces) point(ifindex int) flow.ObservationPoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.points[ifindex]; ok {
		return p
	}
	return flow.ObservationPoint{Node: f.node, Interface: fmt.Sprintf("if%d", ifindex), Kind: "node"}
}

// update handles a link that exists now (from a listing or RTM_NEWLINK).
func (f *ifaces) update(l netlink.Link) error {
	a := l.Attrs()
	bridged := false
	if a.MasterIndex > 0 {
		if m, err := f.h.LinkByIndex(a.MasterIndex); err == nil && m.Type() == "bridge" {
			bridged = true
		}
	}
	lk := Link{Index: a.Index, Name: a.Name, Type: l.Type(), Bridged: bridged, PeerNetnsID: a.NetNsID}
	if l.Type() != "veth" {
		lk.PeerNetnsID = -1
	}
	if lk.PeerNetnsID >= 0 {
		lk.PeerNetns = f.nsName(lk.PeerNetnsID)
	}
	kind, pod, ok := f.classify(lk)
	f.mu.Lock()
	if !ok {
		delete(f.points, a.Index)
		f.mu.Unlock()
		return nil
	}
	f.points[a.Index] = flow.ObservationPoint{Node: f.node, Interface: a.Name, Kind: kind, Pod: pod}
	done := f.attached[a.Index]
	f.mu.Unlock()
	if done {
		return nil
	}
	if err := f.attach(a.Index); err != nil {
		return err
	}
	f.mu.Lock()
	f.attached[a.Index] = true
	f.mu.Unlock()
	return nil
}

func (f *ifaces) gone(ifindex int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, ifindex)
}

// nsName maps a netns id (as the node namespace numbers it) to a named
// namespace under /run/netns.
func (f *ifaces) nsName(id int) string {
	f.mu.Lock()
	name, ok := f.nsNames[id]
	f.mu.Unlock()
	if ok {
		return name
	}
	ents, _ := os.ReadDir("/run/netns")
	found := ""
	for _, e := range ents {
		fd, err := unix.Open(filepath.Join("/run/netns", e.Name()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		nid, err := f.h.GetNetNsIdByFd(fd)
		unix.Close(fd)
		if err == nil && nid >= 0 {
			f.mu.Lock()
			f.nsNames[nid] = e.Name()
			f.mu.Unlock()
			if nid == id {
				found = e.Name()
			}
		}
	}
	return found
}

func (f *ifaces) snapshot() []flow.ObservationPoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []flow.ObservationPoint
	for idx, p := range f.points {
		if f.attached[idx] {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b flow.ObservationPoint) int {
		if a.Interface < b.Interface {
			return -1
		}
		if a.Interface > b.Interface {
			return 1
		}
		return 0
	})
	return out
}
