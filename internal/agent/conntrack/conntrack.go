// Package conntrack reads a node namespace's connection tracking over
// netlink and reports NAT mappings: a connection whose reply tuple is not
// the mirror of its original tuple was DNAT'd (ClusterIP, NodePort) or
// SNAT'd (masquerade). The server relates the flows on either side of the
// translation with these mappings.
//
// Conntrack does nothing in a namespace until a rule needs it, so Enable
// adds one harmless `-m conntrack` rule in a chain of Palisade's own and
// switches on per-connection accounting and timestamps.
package conntrack

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/netns"
)

// Chain is the iptables chain (filter table) that holds the rule keeping
// conntrack on. Nothing jumps to it: the rule's existence is what counts.
const Chain = "PALISADE-CONNTRACK"

// Enable turns conntrack on in the namespace at nsPath ("" = the agent's
// own) and sets nf_conntrack_acct and nf_conntrack_timestamp there.
func Enable(nsPath string) error {
	// -N fails if the chain exists; that is fine.
	_, _ = inNS(nsPath, "iptables", "-w", "-t", "filter", "-N", Chain)
	rule := []string{"-m", "conntrack", "--ctstate", "INVALID", "-j", "RETURN"}
	if _, err := inNS(nsPath, "iptables", append([]string{"-w", "-t", "filter", "-C", Chain}, rule...)...); err != nil {
		if out, err := inNS(nsPath, "iptables", append([]string{"-w", "-t", "filter", "-A", Chain}, rule...)...); err != nil {
			return fmt.Errorf("conntrack rule in %s: %w: %s", nsName(nsPath), err, out)
		}
	}
	// /proc/sys/net is the opening thread's namespace's.
	return netns.Do(nsPath, func() error {
		for _, s := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+s, []byte("1"), 0); err != nil {
				return fmt.Errorf("%s in %s: %w", s, nsName(nsPath), err)
			}
		}
		return nil
	})
}

// Disable removes Palisade's chain (conntrack stays on while other rules
// need it).
func Disable(nsPath string) error {
	_, _ = inNS(nsPath, "iptables", "-w", "-t", "filter", "-F", Chain)
	_, err := inNS(nsPath, "iptables", "-w", "-t", "filter", "-X", Chain)
	return err
}

func inNS(nsPath, name string, args ...string) ([]byte, error) {
	if nsPath != "" {
		args = append([]string{"--net=" + nsPath, "--", name}, args...)
		name = "nsenter"
	}
	return exec.Command(name, args...).CombinedOutput()
}

func nsName(p string) string {
	if p == "" {
		return "the agent's namespace"
	}
	return p
}

// Config configures a Watcher.
type Config struct {
	Node   string
	NSPath string // "" = the agent's own namespace
	Log    *slog.Logger
}

// Counters are the watcher's health numbers.
type Counters struct {
	Events   uint64 `json:"ctEvents"` // NAT events received (others are filtered in the kernel)
	NAT      uint64 `json:"ctNAT"`
	Overruns uint64 `json:"ctOverruns"` // socket overflows (events lost, recovered by a dump)
}

// Watcher follows conntrack NEW events and collects NAT mappings.
type Watcher struct {
	cfg Config

	mu      sync.Mutex
	pending []flow.NAT
	// seen dedups a dump against the events received around it: the
	// kernel sends one NEW event per connection, so outside the few seconds
	// after a dump nothing needs remembering (memory stays bounded however
	// many NAT'd connections a node makes). A mapping reported before a
	// socket overrun may be reported again by the resync dump: NAT records
	// are facts keyed by (node, conn id, tuples) and safe to repeat.
	seen       map[seenKey]struct{}
	dedupUntil time.Time

	events, nat, overruns atomic.Uint64
}

type seenKey struct {
	id   uint32
	orig flow.Tuple
}

// NewWatcher returns a watcher; call Run.
func NewWatcher(cfg Config) *Watcher {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Watcher{cfg: cfg, seen: map[seenKey]struct{}{}}
}

// Run listens until ctx ends. It dumps the table first (and again after a
// socket overflow), so mappings made while not listening are not missed.
func (w *Watcher) Run(ctx context.Context) error {
	for {
		err := w.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.overruns.Add(1)
		w.cfg.Log.Warn("conntrack events interrupted; resyncing", "node", w.cfg.Node, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *Watcher) dial() (*ct.Conn, error) {
	var nc netlink.Config
	if w.cfg.NSPath != "" {
		f, err := os.Open(w.cfg.NSPath)
		if err != nil {
			return nil, fmt.Errorf("open netns: %w", err)
		}
		defer f.Close()
		nc.NetNS = int(f.Fd())
	}
	c, err := ct.Dial(&nc)
	if err != nil {
		return nil, fmt.Errorf("conntrack netlink in %s: %w", nsName(w.cfg.NSPath), err)
	}
	return c, nil
}

// natOnly is a socket filter for conntrack events: it passes a message
// only if its CTA_STATUS has IPS_SRC_NAT or IPS_DST_NAT set (or it has no
// status), so the agent is not woken for each of the thousands of plain
// connections a busy node makes per second.
var natOnly = mustAssemble([]bpf.Instruction{
	bpf.LoadConstant{Dst: bpf.RegA, Val: 20}, // attributes start after nlmsghdr + nfgenmsg
	bpf.LoadConstant{Dst: bpf.RegX, Val: ctaStatus},
	bpf.LoadExtension{Num: bpf.ExtNetlinkAttr},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 4}, // no status: pass
	bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 4},
	bpf.TAX{},
	bpf.LoadIndirect{Off: 0, Size: 4}, // status, network order
	bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: ipsSrcNAT | ipsDstNAT, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

const (
	ctaStatus = 3
	ipsSrcNAT = 1 << 4
	ipsDstNAT = 1 << 5
)

func mustAssemble(p []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(p)
	if err != nil {
		panic(err)
	}
	return raw
}

func (w *Watcher) listen(ctx context.Context) error {
	var nc netlink.Config
	if w.cfg.NSPath != "" {
		f, err := os.Open(w.cfg.NSPath)
		if err != nil {
			return fmt.Errorf("open netns: %w", err)
		}
		nc.NetNS = int(f.Fd())
		defer f.Close()
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &nc)
	if err != nil {
		return fmt.Errorf("conntrack netlink in %s: %w", nsName(w.cfg.NSPath), err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(16 << 20)
	if err := c.SetBPF(natOnly); err != nil {
		return fmt.Errorf("conntrack event filter: %w", err)
	}
	if err := c.JoinGroup(uint32(netfilter.GroupCTNew)); err != nil {
		return fmt.Errorf("conntrack events: %w", err)
	}
	// Dump after subscribing, so nothing falls between the two.
	w.mu.Lock()
	w.dedupUntil = time.Now().Add(time.Hour) // until the dump is done
	w.mu.Unlock()
	if err := w.Dump(); err != nil {
		w.cfg.Log.Warn("conntrack dump", "err", err)
	}
	w.mu.Lock()
	w.dedupUntil = time.Now().Add(10 * time.Second)
	w.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range msgs {
			var ev ct.Event
			if ev.Unmarshal(m) != nil || ev.Flow == nil {
				continue
			}
			w.events.Add(1)
			w.add(ev.Flow)
		}
	}
}

// Dump reads the whole table once and records the NAT mappings in it.
func (w *Watcher) Dump() error {
	c, err := w.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return fmt.Errorf("conntrack dump: %w", err)
	}
	for i := range flows {
		w.add(&flows[i])
	}
	return nil
}

func (w *Watcher) add(f *ct.Flow) {
	orig, reply := tuple(f.TupleOrig), tuple(f.TupleReply)
	if !isNAT(orig, reply) {
		return
	}
	k := seenKey{id: f.ID, orig: orig}
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Now().Before(w.dedupUntil) {
		if _, dup := w.seen[k]; dup {
			return
		}
		w.seen[k] = struct{}{}
	} else if len(w.seen) > 0 {
		w.seen = map[seenKey]struct{}{}
	}
	w.nat.Add(1)
	at := f.Timestamp.Start // with nf_conntrack_timestamp; else when seen
	if at.IsZero() {
		at = time.Now()
	}
	w.pending = append(w.pending, flow.NAT{Node: w.cfg.Node, ConnID: f.ID, Original: orig, Reply: reply, Time: at.UTC()})
}

// Take returns and forgets the mappings collected since the last Take.
func (w *Watcher) Take() []flow.NAT {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending
	w.pending = nil
	return p
}

// Counters returns the watcher's health numbers.
func (w *Watcher) Counters() Counters {
	return Counters{Events: w.events.Load(), NAT: w.nat.Load(), Overruns: w.overruns.Load()}
}

// isNAT: the reply is not the mirror of the original.
func isNAT(o, r flow.Tuple) bool {
	return o.SrcIP != r.DstIP || o.DstIP != r.SrcIP || o.SrcPort != r.DstPort || o.DstPort != r.SrcPort
}

func tuple(t ct.Tuple) flow.Tuple {
	ft := flow.Tuple{
		Proto:   ProtoName(t.Proto.Protocol),
		SrcIP:   addrString(t.IP.SourceAddress),
		DstIP:   addrString(t.IP.DestinationAddress),
		SrcPort: t.Proto.SourcePort,
		DstPort: t.Proto.DestinationPort,
	}
	if t.Proto.ICMPv4 || t.Proto.ICMPv6 {
		// As the flow capture names ICMP: type and code for ports.
		ft.SrcPort, ft.DstPort = flow.ICMPPorts(t.Proto.Protocol, t.Proto.ICMPType, t.Proto.ICMPCode)
	}
	return ft
}

func addrString(a netip.Addr) string { return a.Unmap().String() }

// ProtoName is the wire contract's protocol name: "tcp", "udp", "icmp", "icmpv6", or
// the protocol number.
func ProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return flow.ProtoICMP
	case 58:
		return flow.ProtoICMPv6
	}
	return strconv.Itoa(int(p))
}
