package flow

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// Modes an agent reports in.
const (
	// ConversationMode: 15 s summaries, source port dropped, client = SYN sender.
	ConversationMode = "conversation"
	// DetailedMode: one record per 5-tuple per second while active.
	DetailedMode = "detailed"
)

// Reasons two flows are related. Each relation is recorded on both flows.
const (
	ReasonClusterIP = "clusterip-dnat"     // pod→serviceIP:port ↔ pod→pod:targetPort
	ReasonNodePort  = "nodeport-dnat-snat" // ext→nodeIP:nodePort ↔ nodeIP→pod:podPort
	ReasonEgress    = "egress-snat"        // pod→ext ↔ nodeIP→ext
	ReasonVXLAN     = "overlay-vxlan"      // inner pod→pod ↔ UDP node1→node2:4789
	ReasonIPIP      = "overlay-ipip"       // inner pod→pod ↔ node1→node2 IPIP
)

// Reasons lists every relation reason; a flow stores its reasons as a bit
// set in this order.
var Reasons = []string{ReasonClusterIP, ReasonNodePort, ReasonEgress, ReasonVXLAN, ReasonIPIP}

// ReasonBit returns the bit of reason in a reason set (0 if unknown).
func ReasonBit(reason string) uint8 {
	for i, r := range Reasons {
		if r == reason {
			return 1 << i
		}
	}
	return 0
}

// Flow is what the server reports: one conversation (conversation mode) or
// one 5-tuple for one second (detailed mode), deduplicated over every
// observation point that saw it, related to the flows NAT or a tunnel made
// of it, with both ends attributed to the workloads that held their IPs at
// the flow's start.
type Flow struct {
	ID    string    `json:"id"`
	Mode  string    `json:"mode"`
	Proto string    `json:"proto"`
	Src   Endpoint  `json:"src"`
	Dst   Endpoint  `json:"dst"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Forward is client→server, Reverse server→client. Packets seen at
	// several points are counted once (the largest count of any point).
	FwdPackets uint64   `json:"fwdPackets"`
	FwdBytes   uint64   `json:"fwdBytes"`
	RevPackets uint64   `json:"revPackets"`
	RevBytes   uint64   `json:"revBytes"`
	Flags      []string `json:"flags,omitempty"`
	Conns      uint64   `json:"conns"`
	// Replied is the network outcome: the server side answered (a SYN-ACK,
	// or any packet server→client).
	Replied bool `json:"replied"`
	// Points are the observation points that saw this flow.
	Points  []ObservationPoint `json:"points"`
	Related []Related          `json:"related,omitempty"`
	// Tunnel is the encapsulation type ("vxlan", "ipip") when this flow is
	// the outer flow of an overlay.
	Tunnel string `json:"tunnel,omitempty"`
}

// Related names another flow and why it is related.
type Related struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Endpoint is one end of a flow, enriched from the inventory at the flow's
// time. Only IP (and Port) are set when no workload held the IP.
type Endpoint struct {
	IP        string            `json:"ip"`
	Port      uint16            `json:"port,omitempty"`
	Workload  string            `json:"workload,omitempty"` // inventory ID
	Kind      string            `json:"kind,omitempty"`
	Name      string            `json:"name,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Owner     *inventory.Owner  `json:"owner,omitempty"`
	Service   string            `json:"service,omitempty"` // namespace/name of the service in front of IP:Port
	Node      string            `json:"node,omitempty"`
}

// Key identifies the 5-tuple of a flow in a mode; flows with equal keys
// overlapping in time are the same flow.
type Key struct {
	Mode    string
	Proto   string
	SrcIP   string
	DstIP   string
	SrcPort uint16
	DstPort uint16
}

// KeyOf returns the key of a tuple reported in mode. In conversation mode
// the source port is dropped.
func KeyOf(mode string, t Tuple) Key {
	k := Key{Mode: mode, Proto: t.Proto, SrcIP: t.SrcIP, DstIP: t.DstIP, SrcPort: t.SrcPort, DstPort: t.DstPort}
	if mode == ConversationMode {
		k.SrcPort = 0
	}
	return k
}

// Key returns the key of f.
func (f *Flow) Key() Key {
	return Key{Mode: f.Mode, Proto: f.Proto, SrcIP: f.Src.IP, DstIP: f.Dst.IP, SrcPort: f.Src.Port, DstPort: f.Dst.Port}
}

// Bytes is the total of both directions.
func (f *Flow) Bytes() uint64 { return f.FwdBytes + f.RevBytes }

// Packets is the total of both directions.
func (f *Flow) Packets() uint64 { return f.FwdPackets + f.RevPackets }

// MakeID builds a flow ID from its start and a 64-bit number unique among
// flows starting in the same millisecond. The start is readable back with
// ParseID, so a store finds a flow by ID without an ID index.
func MakeID(start time.Time, n uint64) string {
	var b [14]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start.UnixMilli())<<16)
	binary.BigEndian.PutUint64(b[6:], n)
	return hex.EncodeToString(b[:])
}

// ParseID returns the start (to the millisecond) and number of a flow ID.
func ParseID(id string) (time.Time, uint64, error) {
	var b [14]byte
	if len(id) != 28 {
		return time.Time{}, 0, fmt.Errorf("flow id %q: want 28 hex digits", id)
	}
	for i := range b {
		hi, ok1 := unhex(id[2*i])
		lo, ok2 := unhex(id[2*i+1])
		if !ok1 || !ok2 {
			return time.Time{}, 0, fmt.Errorf("flow id %q: want 28 hex digits", id)
		}
		b[i] = hi<<4 | lo
	}
	ms := int64(binary.BigEndian.Uint64(b[:8]) >> 16)
	return time.UnixMilli(ms).UTC(), binary.BigEndian.Uint64(b[6:]), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// HasFlag reports whether flag was seen.
func (f *Flow) HasFlag(flag string) bool {
	for _, g := range f.Flags {
		if g == flag {
			return true
		}
	}
	return false
}

// Field implements filter.Record. Flow fields are those of FieldNames, the
// src./dst. endpoint fields and the src.label.<key>/dst.label.<key> labels.
func (f *Flow) Field(name string) (Value, bool) {
	switch {
	case name == "dst.port" && IsICMP(f.Proto):
		return scalar(ICMPName(f.Proto, f.Dst.Port)), true
	case strings.HasPrefix(name, "src."):
		return f.Src.field(name[4:])
	case strings.HasPrefix(name, "dst."):
		return f.Dst.field(name[4:])
	}
	switch name {
	case "id":
		return scalar(f.ID), true
	case "mode":
		return scalar(f.Mode), true
	case "proto":
		return scalar(f.Proto), true
	case "replied":
		return scalar(strconv.FormatBool(f.Replied)), true
	case "flags":
		return set(f.Flags...), true
	case "related":
		rs := make([]string, 0, len(f.Related))
		for _, r := range f.Related {
			if !contains(rs, r.Reason) {
				rs = append(rs, r.Reason)
			}
		}
		return set(rs...), len(rs) > 0
	case "related.id":
		ids := make([]string, len(f.Related))
		for i, r := range f.Related {
			ids[i] = r.ID
		}
		return set(ids...), len(ids) > 0
	case "observed_at":
		var s []string
		for _, p := range f.Points {
			s = appendNew(s, p.Kind, p.Node, p.Interface, p.Node+"/"+p.Interface)
			if p.Pod != "" {
				s = appendNew(s, p.Pod)
			}
		}
		return set(s...), len(s) > 0
	case "observed_at.kind", "observed_at.node", "observed_at.iface", "observed_at.pod":
		var s []string
		for _, p := range f.Points {
			s = appendNew(s, pointField(p, name[len("observed_at."):]))
		}
		return set(s...), len(s) > 0
	case "tunnel":
		return scalar(f.Tunnel), f.Tunnel != ""
	case "bytes":
		return num(f.Bytes()), true
	case "packets":
		return num(f.Packets()), true
	case "fwd.bytes":
		return num(f.FwdBytes), true
	case "fwd.packets":
		return num(f.FwdPackets), true
	case "rev.bytes":
		return num(f.RevBytes), true
	case "rev.packets":
		return num(f.RevPackets), true
	case "conns":
		return num(f.Conns), true
	case "start":
		return scalar(f.Start.UTC().Format(time.RFC3339Nano)), true
	case "end":
		return scalar(f.End.UTC().Format(time.RFC3339Nano)), true
	case "duration":
		return scalar(strconv.FormatFloat(f.End.Sub(f.Start).Seconds(), 'f', -1, 64)), true
	}
	return Value{}, false
}

func pointField(p ObservationPoint, sub string) string {
	switch sub {
	case "kind":
		return p.Kind
	case "node":
		return p.Node
	case "iface":
		return p.Interface
	}
	return p.Pod
}

func (e *Endpoint) field(name string) (Value, bool) {
	if strings.HasPrefix(name, "label.") {
		v, ok := e.Labels[name[len("label."):]]
		return scalar(v), ok
	}
	switch name {
	case "ip":
		return scalar(e.IP), true
	case "port":
		return num(uint64(e.Port)), true
	case "workload":
		return scalar(e.Workload), e.Workload != ""
	case "kind":
		return scalar(e.Kind), e.Kind != ""
	case "name":
		return scalar(e.Name), e.Name != ""
	case "namespace":
		return scalar(e.Namespace), e.Namespace != ""
	case "owner.kind":
		if e.Owner == nil {
			return Value{}, false
		}
		return scalar(e.Owner.Kind), true
	case "owner.name":
		if e.Owner == nil {
			return Value{}, false
		}
		return scalar(e.Owner.Name), true
	case "service":
		return scalar(e.Service), e.Service != ""
	case "node":
		return scalar(e.Node), e.Node != ""
	}
	return Value{}, false
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func appendNew(s []string, xs ...string) []string {
	for _, x := range xs {
		if x != "" && !contains(s, x) {
			s = append(s, x)
		}
	}
	return s
}
