// Package flow is Palisade's flow model: what node agents observe on the
// wire, and how the server turns observations into deduplicated, related,
// enriched flows.
package flow

import "time"

// ObservationPoint names where an agent saw packets: an interface in a
// node's network namespace (a pod's host-side veth, an uplink, a tunnel
// device) or inside a pod's namespace.
type ObservationPoint struct {
	Node      string `json:"node"`
	Interface string `json:"iface"`
	// Kind is "pod" for a pod's interface (or its host-side veth), "node" for
	// node interfaces (uplink, bridge, vxlan device).
	Kind string `json:"kind"`
	// Pod is "namespace/name" when Kind is "pod".
	Pod string `json:"pod,omitempty"`
}

// Tuple is a 5-tuple as seen at one observation point.
type Tuple struct {
	Proto   string `json:"proto"` // "tcp", "udp", "icmp", "icmpv6" (ports: type<<8|code, see ICMPPorts), or the IP protocol number
	SrcIP   string `json:"srcIP"`
	DstIP   string `json:"dstIP"`
	SrcPort uint16 `json:"srcPort,omitempty"` // 0 in conversation mode summaries
	DstPort uint16 `json:"dstPort,omitempty"`
}

// TCP flags seen in a flow, OR-ed over its packets.
const (
	FlagSYN    = "SYN"
	FlagSYNACK = "SYN-ACK"
	FlagFIN    = "FIN"
	FlagRST    = "RST"
)

// NAT is a conntrack mapping observed on a node: the original direction
// tuple and the tuple the reply comes back on. Original and Reply differing
// in their destination means DNAT (ClusterIP, NodePort); differing in the
// source means SNAT (egress masquerade, NodePort SNAT).
type NAT struct {
	Node     string `json:"node"`
	ConnID   uint32 `json:"connID"`
	Original Tuple  `json:"original"`
	Reply    Tuple  `json:"reply"`
	// Time is when the connection was set up (conntrack's start
	// timestamp, else when the agent saw the mapping): the mapping relates
	// only flows active at or after it, so a tuple reused later by another
	// connection is not related through an old mapping.
	Time time.Time `json:"time,omitzero"`
}

// Observation is one record an agent reports: a flow seen at one
// observation point over [Start, End]. The client side (Tuple.Src) is the
// one that sent the SYN; with no SYN seen, the lower well-known port is the
// server.
type Observation struct {
	// Seq is the agent's sequence number for this record; (Agent, Seq) is
	// unique and makes resends idempotent.
	Agent string           `json:"agent"`
	Seq   uint64           `json:"seq"`
	Mode  string           `json:"mode"` // "conversation" or "detailed"
	Point ObservationPoint `json:"point"`
	Tuple Tuple            `json:"tuple"`
	Start time.Time        `json:"start"`
	End   time.Time        `json:"end"`
	// Forward is client→server, Reverse server→client.
	FwdPackets uint64   `json:"fwdPackets"`
	FwdBytes   uint64   `json:"fwdBytes"`
	RevPackets uint64   `json:"revPackets"`
	RevBytes   uint64   `json:"revBytes"`
	Flags      []string `json:"flags,omitempty"`
	// Conns counts connections summarised (conversation mode), 1 in detailed mode.
	Conns uint64 `json:"conns"`
	// NewConns counts the connections among Conns that started in this
	// record's window (a TCP SYN from the client, or a non-TCP flow's first
	// packet), so summing it over records counts each connection once.
	NewConns uint64 `json:"newConns,omitempty"`
	// Tunnel is set for encapsulated traffic (e.g. VXLAN UDP 4789) and
	// carries the inner tuples seen in this record's window, so the server
	// can relate the tunnel flow with the pod flows it carried.
	Tunnel *Tunnel `json:"tunnel,omitempty"`
}

// Tunnel describes an encapsulation flow.
type Tunnel struct {
	Type  string  `json:"type"` // "vxlan", "ipip" (modelled; absent from this kernel)
	VNI   uint32  `json:"vni,omitempty"`
	Inner []Tuple `json:"inner,omitempty"`
}

// Batch is what an agent sends in one request. The server acknowledges it
// only after a durable write; a batch resent after a lost ack is recognised
// by (Agent, Seq) of its records.
type Batch struct {
	Agent        string        `json:"agent"`
	Node         string        `json:"node"`
	Observations []Observation `json:"observations"`
	NAT          []NAT         `json:"nat,omitempty"`
}
