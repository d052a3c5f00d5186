package flow

import (
	"fmt"
	"net/netip"
)

// BatchError says which record of a batch is malformed and why.
type BatchError struct {
	Record string `json:"record"` // "observation" or "nat"; empty for the batch itself
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Msg    string `json:"error"`
}

func (e *BatchError) Error() string {
	if e.Record == "" {
		return fmt.Sprintf("batch: field %s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("%s %d: field %s: %s", e.Record, e.Index, e.Field, e.Msg)
}

// Validate checks a batch before anything of it is stored. It fills
// observations' empty Agent with the batch's.
func (b *Batch) Validate() error {
	if b.Agent == "" {
		return &BatchError{Field: "agent", Msg: "missing"}
	}
	if b.Node == "" {
		return &BatchError{Field: "node", Msg: "missing"}
	}
	for i := range b.Observations {
		o := &b.Observations[i]
		bad := func(field, format string, args ...any) error {
			return &BatchError{Record: "observation", Index: i, Field: field, Msg: fmt.Sprintf(format, args...)}
		}
		if o.Agent == "" {
			o.Agent = b.Agent
		}
		if o.Agent != b.Agent {
			return bad("agent", "%q differs from the batch's agent %q", o.Agent, b.Agent)
		}
		if o.Mode != ConversationMode && o.Mode != DetailedMode {
			return bad("mode", "%q is neither %q nor %q", o.Mode, ConversationMode, DetailedMode)
		}
		if o.Point.Node == "" {
			return bad("point.node", "missing")
		}
		if o.Point.Interface == "" {
			return bad("point.iface", "missing")
		}
		if o.Point.Kind != "pod" && o.Point.Kind != "node" {
			return bad("point.kind", "%q is neither \"pod\" nor \"node\"", o.Point.Kind)
		}
		if field, msg := checkTuple(&o.Tuple); field != "" {
			return bad("tuple."+field, "%s", msg)
		}
		if o.Start.IsZero() {
			return bad("start", "missing")
		}
		if o.End.Before(o.Start) {
			return bad("end", "before start")
		}
		if o.Start.UnixNano() <= 0 {
			return bad("start", "before 1970")
		}
		for _, f := range o.Flags {
			if f != FlagSYN && f != FlagSYNACK && f != FlagFIN && f != FlagRST {
				return bad("flags", "unknown flag %q", f)
			}
		}
		if o.Tunnel != nil {
			if o.Tunnel.Type != "vxlan" && o.Tunnel.Type != "ipip" {
				return bad("tunnel.type", "%q is neither \"vxlan\" nor \"ipip\"", o.Tunnel.Type)
			}
			for j := range o.Tunnel.Inner {
				if field, msg := checkTuple(&o.Tunnel.Inner[j]); field != "" {
					return bad(fmt.Sprintf("tunnel.inner[%d].%s", j, field), "%s", msg)
				}
			}
		}
	}
	for i := range b.NAT {
		n := &b.NAT[i]
		for _, t := range []struct {
			name string
			t    *Tuple
		}{{"original", &n.Original}, {"reply", &n.Reply}} {
			if field, msg := checkTuple(t.t); field != "" {
				return &BatchError{Record: "nat", Index: i, Field: t.name + "." + field, Msg: msg}
			}
		}
	}
	return nil
}

func checkTuple(t *Tuple) (field, msg string) {
	if t.Proto == "" {
		return "proto", "missing"
	}
	if _, err := netip.ParseAddr(t.SrcIP); err != nil {
		return "srcIP", fmt.Sprintf("%q is not an IP address", t.SrcIP)
	}
	if _, err := netip.ParseAddr(t.DstIP); err != nil {
		return "dstIP", fmt.Sprintf("%q is not an IP address", t.DstIP)
	}
	return "", ""
}
