package flow

import (
	"strconv"
	"strings"

	"github.com/palisade-dev/palisade/internal/filter"
)

// Value is the filter language's field value.
type Value = filter.Value

func scalar(s string) Value { return Value{Strs: []string{s}} }
func set(s ...string) Value { return Value{Strs: s, Set: true} }
func num(n uint64) Value    { return scalar(strconv.FormatUint(n, 10)) }
func endpointField(f string) bool {
	switch f {
	case "ip", "port", "workload", "kind", "name", "namespace", "owner.kind", "owner.name", "service", "node":
		return true
	}
	return strings.HasPrefix(f, "label.") && len(f) > len("label.")
}

// FieldNames are the flow fields besides the src./dst. endpoint fields
// (src.ip, src.port, src.workload, src.kind, src.name, src.namespace,
// src.label.<key>, src.owner.kind, src.owner.name, src.service, src.node and
// the same under dst.).
var FieldNames = []string{
	"id", "mode", "proto", "replied", "flags", "related", "related.id",
	"observed_at", "observed_at.kind", "observed_at.node", "observed_at.iface", "observed_at.pod",
	"tunnel", "bytes", "packets", "fwd.bytes", "fwd.packets", "rev.bytes", "rev.packets",
	"conns", "start", "end", "duration",
}

// Schema is the filter schema of flows.
var Schema filter.Schema = schema{}

type schema struct{}

func (schema) ValidField(name string) bool {
	if strings.HasPrefix(name, "src.") || strings.HasPrefix(name, "dst.") {
		return endpointField(name[4:])
	}
	return contains(FieldNames, name)
}

// FieldClass says how much of a flow a field depends on, so a store can
// evaluate a filter once per group of flows that agree on it.
type FieldClass uint8

const (
	// ClassPair fields depend only on the two endpoints (without the
	// source port), the protocol and the destination port.
	ClassPair FieldClass = iota
	// ClassAttr fields depend on the mode, flags, reply, relation reasons,
	// observation points and tunnel type: few distinct combinations.
	ClassAttr
	// ClassRecord fields differ from flow to flow (ports, counters, times).
	ClassRecord
)

// ClassOf returns the class of a flow field.
func ClassOf(name string) FieldClass {
	if strings.HasPrefix(name, "src.") || strings.HasPrefix(name, "dst.") {
		if name == "src.port" {
			return ClassRecord
		}
		return ClassPair
	}
	switch name {
	case "proto":
		return ClassPair
	case "mode", "replied", "flags", "related", "observed_at", "observed_at.kind",
		"observed_at.node", "observed_at.iface", "observed_at.pod", "tunnel":
		return ClassAttr
	}
	return ClassRecord
}

// Query is a compiled flow search, handed to a Store.
type Query struct {
	// From and To bound the search: flows overlapping [From, To].
	From, To int64 // unix nanoseconds
	// Limit caps the number of flows returned (newest first).
	Limit int
	// Filter is nil to match every flow.
	Filter *filter.Filter
	// Classes has bit 1<<c set for each class c among the filter's fields.
	Classes uint8
}

// Has reports whether the filter refers to a field of class c.
func (q *Query) Has(c FieldClass) bool { return q.Classes&(1<<c) != 0 }

// NewQuery parses src as a flow filter. Errors are *filter.Error with the
// position of the offending token.
func NewQuery(src string, from, to int64, limit int) (Query, error) {
	q := Query{From: from, To: to, Limit: limit}
	if strings.TrimSpace(src) == "" {
		return q, nil
	}
	f, err := filter.Parse(src, Schema)
	if err != nil {
		return q, err
	}
	q.Filter = f
	for _, name := range f.Fields() {
		q.Classes |= 1 << ClassOf(name)
	}
	return q, nil
}

// Match reports whether f passes the query's filter (not its time range).
func (q *Query) Match(f *Flow) bool { return q.Filter == nil || q.Filter.Match(f) }
