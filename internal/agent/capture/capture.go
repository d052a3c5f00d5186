// Package capture observes packets on a node's interfaces with an eBPF tc
// (clsact) classifier and hands user space per-interface flow counters.
//
// The kernel side (bpf/flow.c) aggregates per (ifindex, canonical 5-tuple):
// packets and IP bytes each way, TCP flags each way, first/last seen. User
// space drains the maps once per reporting window (batch lookup-and-delete),
// so the kernel holds only what has not been reported yet. With a pin
// directory the maps outlive the agent process: a restarted agent drains what
// was counted while it was down.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Flag bits, per direction, as the classifier records them. FlagSYN is a
// pure SYN (no ACK); a SYN with ACK sets FlagSYNACK instead.
const (
	FlagFIN    = 0x01
	FlagSYN    = 0x02
	FlagRST    = 0x04
	FlagPSH    = 0x08
	FlagACK    = 0x10
	FlagSYNACK = 0x100
)

// Key identifies a flow at one interface. A and B are the canonical ends:
// (A, APort) orders before (B, BPort), whichever sent first.
type Key struct {
	Ifindex int
	Proto   uint8
	A, B    netip.Addr
	APort   uint16
	BPort   uint16
}

// Record is what one interface counted for one flow since the last drain.
// AB is A→B, BA is B→A.
type Record struct {
	Key
	First, Last time.Time
	PktsAB      uint64
	BytesAB     uint64
	PktsBA      uint64
	BytesBA     uint64
	FlagsAB     uint32
	FlagsBA     uint32
	// FirstFromB is true when the first packet counted went B→A.
	FirstFromB bool
	// VNI is set for a VXLAN outer flow (UDP to 4789).
	VNI    uint32
	Tunnel bool
	// SYNs counts TCP connections started in this record: pure SYNs with
	// distinct initial sequence numbers; SYNSeq is the last one's, so a
	// SYN retransmitted after a drain can be recognised.
	SYNs   uint32
	SYNSeq uint32
}

// Inner is a tuple seen inside a VXLAN outer flow.
type Inner struct {
	Outer            Key
	VNI              uint32
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Flags            uint32
	Last             time.Time
}

// Stats are the classifier's own counters, summed over CPUs.
type Stats struct {
	Packets     uint64
	NewFlows    uint64
	InsertFails uint64 // flow map full: packets not counted
	Unparsed    uint64 // non-IP or truncated packets
}

// Options configure Open.
type Options struct {
	// PinDir, if set, pins the maps there (on a mounted bpffs) and reuses
	// maps already pinned by an earlier agent.
	PinDir string
	// MaxFlows sizes the flow map; 0 keeps the compiled default (262144).
	MaxFlows uint32
}

// Capture is a loaded classifier and its maps. Attach it to interfaces with
// Attach; read it with Drain. Safe for use by one goroutine at a time.
type Capture struct {
	objs   flowObjects
	pinDir string
	clock  clock
}

// Open loads the classifier.
func Open(opts Options) (*Capture, error) {
	spec, err := loadFlow()
	if err != nil {
		return nil, fmt.Errorf("load flow spec: %w", err)
	}
	if opts.MaxFlows > 0 {
		spec.Maps[flowMapFlows].MaxEntries = opts.MaxFlows
	}
	var co ebpf.CollectionOptions
	if opts.PinDir != "" {
		if err := EnsureBPFFS(filepath.Dir(opts.PinDir)); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(opts.PinDir, 0o700); err != nil {
			return nil, fmt.Errorf("pin dir: %w", err)
		}
		co.Maps.PinPath = opts.PinDir
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	c := &Capture{pinDir: opts.PinDir, clock: newClock()}
	err = spec.LoadAndAssign(&c.objs, &co)
	if errors.Is(err, ebpf.ErrMapIncompatible) && opts.PinDir != "" {
		// Maps pinned by an agent of another version: start afresh.
		for name := range spec.Maps {
			_ = os.Remove(filepath.Join(opts.PinDir, name))
		}
		err = spec.LoadAndAssign(&c.objs, &co)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load flow classifier: %+v", ve)
		}
		return nil, fmt.Errorf("load flow classifier: %w", err)
	}
	return c, nil
}

// EnsureBPFFS makes dir exist on a bpf filesystem, mounting one at dir if
// needed. Not /sys/fs/bpf: `ip netns exec` remounts /sys.
func EnsureBPFFS(dir string) error {
	// Agents for several nodes may start together: mount once.
	bpffsMu.Lock()
	defer bpffsMu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpffs dir: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

var bpffsMu sync.Mutex

// Close releases the process's references. Attached filters keep the
// classifier running; pinned maps keep the counters.
func (c *Capture) Close() error { return c.objs.Close() }

// Unpin removes the pinned maps, so that once detached nothing is left.
func (c *Capture) Unpin() error {
	var errs []error
	for _, m := range []*ebpf.Map{c.objs.Flows, c.objs.TunnelInner, c.objs.Stats} {
		if m.IsPinned() {
			errs = append(errs, m.Unpin())
		}
	}
	if c.pinDir != "" {
		_ = os.Remove(c.pinDir)
	}
	return errors.Join(errs...)
}

const (
	filterHandle = 0x7061 // "pa"
	filterPrio   = 0xa11
	filterName   = "palisade_flow"
)

// Attach installs the classifier on ingress and egress of ifindex in the
// namespace h operates in, creating the clsact qdisc if missing. It replaces
// an earlier Palisade filter (e.g. from a previous agent process).
func (c *Capture) Attach(h *netlink.Handle, ifindex int) error {
	qd := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := h.QdiscReplace(qd); err != nil {
		return fmt.Errorf("clsact on ifindex %d: %w", ifindex, err)
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    parent,
				Handle:    filterHandle,
				Priority:  filterPrio,
				Protocol:  unix.ETH_P_ALL,
			},
			Fd:           c.objs.PalisadeFlow.FD(),
			Name:         filterName,
			DirectAction: true,
		}
		if err := h.FilterReplace(f); err != nil {
			return fmt.Errorf("tc filter on ifindex %d: %w", ifindex, err)
		}
	}
	return nil
}

// Detach removes the classifier from ifindex (the clsact qdisc stays).
func (c *Capture) Detach(h *netlink.Handle, ifindex int) error {
	var errs []error
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex, Parent: parent, Handle: filterHandle,
			Priority: filterPrio, Protocol: unix.ETH_P_ALL,
		}}
		if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("detach ifindex %d: %w", ifindex, err))
		}
	}
	return errors.Join(errs...)
}

const batchSize = 4096

// Drain returns and removes everything counted since the last drain.
func (c *Capture) Drain() ([]Record, []Inner, error) {
	var recs []Record
	err := drainMap(c.objs.Flows, func(k flowFlowKey, v flowFlowVal) {
		recs = append(recs, c.record(k, v))
	})
	if err != nil {
		return nil, nil, err
	}
	var inner []Inner
	err = drainMap(c.objs.TunnelInner, func(k flowInnerKey, v flowInnerVal) {
		inner = append(inner, Inner{
			Outer:   key(k.Outer),
			VNI:     k.Vni,
			Proto:   k.Inner.Proto,
			Src:     addr(k.Inner.Src, k.Inner.Family),
			Dst:     addr(k.Inner.Dst, k.Inner.Family),
			SrcPort: k.Inner.Sport,
			DstPort: k.Inner.Dport,
			Flags:   v.Flags,
			Last:    c.clock.wall(v.LastNs),
		})
	})
	return recs, inner, err
}

// drainMap batch-deletes all entries of m, falling back to one at a time
// where batch operations are not supported.
func drainMap[K, V any](m *ebpf.Map, fn func(K, V)) error {
	keys := make([]K, batchSize)
	vals := make([]V, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return drainOneByOne(m, fn)
		}
		if err != nil {
			return fmt.Errorf("drain %s: %w", m, err)
		}
	}
}

func drainOneByOne[K, V any](m *ebpf.Map, fn func(K, V)) error {
	var k K
	var v V
	var keys []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m, err)
	}
	for _, k := range keys {
		if err := m.LookupAndDelete(&k, &v); err == nil {
			fn(k, v)
		}
	}
	return nil
}

// Stats reads the classifier's counters.
func (c *Capture) Stats() (Stats, error) {
	var s Stats
	for i, dst := range []*uint64{&s.Packets, &s.NewFlows, &s.InsertFails, &s.Unparsed} {
		var per []uint64
		if err := c.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// FlowMapSize is the flow map's capacity.
func (c *Capture) FlowMapSize() uint32 { return c.objs.Flows.MaxEntries() }

func (c *Capture) record(k flowFlowKey, v flowFlowVal) Record {
	return Record{
		Key:        key(k),
		First:      c.clock.wall(v.FirstNs),
		Last:       c.clock.wall(v.LastNs),
		PktsAB:     v.PktsAb,
		BytesAB:    v.BytesAb,
		PktsBA:     v.PktsBa,
		BytesBA:    v.BytesBa,
		FlagsAB:    v.FlagsAb,
		FlagsBA:    v.FlagsBa,
		FirstFromB: v.FirstDir == 1,
		VNI:        v.Vni,
		Tunnel:     v.Tunnel != 0,
		SYNs:       v.Syns,
		SYNSeq:     v.SynSeq,
	}
}

func key(k flowFlowKey) Key {
	return Key{
		Ifindex: int(k.Ifindex),
		Proto:   k.Proto,
		A:       addr(k.A_addr, k.Family),
		B:       addr(k.B_addr, k.Family),
		APort:   k.A_port,
		BPort:   k.B_port,
	}
}

func addr(b [16]byte, family uint8) netip.Addr {
	a := netip.AddrFrom16(b)
	if family == 4 {
		return a.Unmap()
	}
	return a
}

// clock converts the classifier's CLOCK_MONOTONIC stamps to wall time.
type clock struct {
	monoAtWall int64 // monotonic ns minus wall ns at Open
}

func newClock() clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{monoAtWall: ts.Nano() - time.Now().UnixNano()}
}

func (c clock) wall(mono uint64) time.Time {
	if mono == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(mono)-c.monoAtWall)
}

// PinDirFor is the conventional pin directory of a node's capture under root.
func PinDirFor(root, node string) string {
	return filepath.Join(root, sanitize(node))
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
