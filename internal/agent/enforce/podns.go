package enforce

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/ruleset"
)

// PodNamespaces finds a pod's network namespace. NetNSDir serves the lab
// and CNIs that bind-mount pod namespaces under /run/netns; on a node with
// a container runtime an implementation asks the runtime (CRI
// PodSandboxStatus) for the sandbox's namespace path instead.
type PodNamespaces interface {
	// Find returns the path of the pod's namespace, or an error wrapping
	// ErrNoNamespace when it does not exist (yet).
	Find(pod ruleset.Pod) (string, error)
	// Watch calls fn whenever namespaces may have appeared or gone away,
	// until ctx ends.
	Watch(ctx context.Context, fn func()) error
}

// ErrNoNamespace: the pod's namespace is not there (yet).
var ErrNoNamespace = errNoNamespace

// NetNSDir finds pod namespaces among the named namespaces in Dir (default
// /run/netns) whose names start with Prefix, by the addresses inside them:
// the namespace holding one of the pod's IPs is the pod's.
type NetNSDir struct {
	Dir    string
	Prefix string

	mu    sync.Mutex
	byIP  map[string]string   // address → path
	known map[string]nsRecord // path → what was read
}

type nsRecord struct {
	ino uint64
	ips []string
}

var _ PodNamespaces = (*NetNSDir)(nil)

func (d *NetNSDir) dir() string {
	if d.Dir == "" {
		return "/run/netns"
	}
	return d.Dir
}

// Find implements PodNamespaces.
func (d *NetNSDir) Find(pod ruleset.Pod) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for pass := 0; pass < 2; pass++ {
		for _, ip := range pod.IPs {
			if p, ok := d.byIP[ip]; ok && d.fresh(p) {
				return p, nil
			}
		}
		if pass == 0 {
			d.rescan()
		}
	}
	return "", fmt.Errorf("pod %s (%s): %w", pod.ID, strings.Join(pod.IPs, ","), errNoNamespace)
}

// fresh reports whether the namespace at p is still the one read.
func (d *NetNSDir) fresh(p string) bool {
	r, ok := d.known[p]
	return ok && inode(p) == r.ino && r.ino != 0
}

func inode(p string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0
	}
	// A file not yet bind-mounted is a plain file on tmpfs, not nsfs.
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0
	}
	return st.Ino
}

func (d *NetNSDir) rescan() {
	if d.known == nil {
		d.known, d.byIP = map[string]nsRecord{}, map[string]string{}
	}
	entries, _ := os.ReadDir(d.dir())
	seen := map[string]bool{}
	var read []string // namespaces whose addresses are to be read
	var inos []uint64
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), d.Prefix) {
			continue
		}
		p := filepath.Join(d.dir(), e.Name())
		seen[p] = true
		ino := inode(p)
		if r, ok := d.known[p]; ok && r.ino == ino && ino != 0 && len(r.ips) > 0 {
			continue
		}
		if ino == 0 {
			continue
		}
		read, inos = append(read, p), append(inos, ino)
	}
	// Side by side: a node's first enforcement reads every pod's.
	ips := make([][]string, len(read))
	parallel(len(read), func(i int) { ips[i] = addrsIn(read[i]) })
	for i, p := range read {
		d.known[p] = nsRecord{ino: inos[i], ips: ips[i]}
		for _, ip := range ips[i] {
			d.byIP[ip] = p
		}
	}
	for p := range d.known {
		if !seen[p] {
			delete(d.known, p)
		}
	}
	for ip, p := range d.byIP {
		if r, ok := d.known[p]; !ok || !contains(r.ips, ip) {
			delete(d.byIP, ip)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// addrsIn lists the global addresses in the namespace at p ("" = the
// agent's own).
func addrsIn(p string) []string {
	var h vns.NsHandle
	var err error
	if p == "" {
		h, err = vns.Get()
	} else {
		h, err = vns.GetFromPath(p)
	}
	if err != nil {
		return nil
	}
	defer h.Close()
	// Only the route family: a handle opens a socket inside the namespace
	// for each family it is given (all of them by default).
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		return nil
	}
	defer nl.Close()
	as, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IP.String())
		}
	}
	return out
}

// Watch implements PodNamespaces with inotify on the directory, and a
// rescan every few seconds in case a namespace got its address later than
// its file.
func (d *NetNSDir) Watch(ctx context.Context, fn func()) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	if err := os.MkdirAll(d.dir(), 0o755); err != nil {
		unix.Close(fd)
		return err
	}
	if _, err := unix.InotifyAddWatch(fd, d.dir(), unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		return fmt.Errorf("inotify on %s: %w", d.dir(), err)
	}
	// The inotify descriptor is read through the runtime's poller (as the
	// nf_tables watchers are): an idle watcher holds no thread and is not
	// woken until something changes in the directory.
	f := os.NewFile(uintptr(fd), "inotify-netns")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("inotify on %s: %w", d.dir(), err)
	}
	events := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			var rerr error
			err := rc.Read(func(fd uintptr) bool {
				_, rerr = unix.Read(int(fd), buf)
				return rerr != unix.EAGAIN && rerr != unix.EINTR
			})
			if err != nil || rerr != nil { // closed
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		defer f.Close()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-events:
			case <-tick.C:
			}
			fn()
		}
	}()
	return nil
}
