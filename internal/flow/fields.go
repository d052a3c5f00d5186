package flow

import (
	"context"
	"regexp"
	"sort"
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
	// ClassSrc fields depend only on the source endpoint (not its port).
	ClassSrc FieldClass = iota
	// ClassDst fields depend only on the destination endpoint (not its port).
	ClassDst
	// ClassPair fields depend on the endpoints, protocol and destination port.
	ClassPair
	// ClassAttr fields depend on the mode, flags, reply, relation reasons,
	// observation points and tunnel type: few distinct combinations.
	ClassAttr
	// ClassSrcPort is the source port alone: at most 65,536 values.
	ClassSrcPort
	// ClassRecord fields differ from flow to flow (counters, times, IDs).
	ClassRecord
)

// ClassOf returns the class of a flow field.
func ClassOf(name string) FieldClass {
	switch {
	case name == "src.port":
		return ClassSrcPort
	case name == "dst.port" || name == "proto":
		return ClassPair
	case strings.HasPrefix(name, "src."):
		return ClassSrc
	case strings.HasPrefix(name, "dst."):
		return ClassDst
	}
	switch name {
	case "mode", "replied", "flags", "related", "observed_at", "observed_at.kind",
		"observed_at.node", "observed_at.iface", "observed_at.pod", "tunnel":
		return ClassAttr
	}
	return ClassRecord
}

// Level is what a filter (or one of its conjuncts) must be evaluated
// once per: the smallest group of flows that agree on all its fields.
type Level uint8

const (
	LevelAll      Level = iota // no field: same answer for every flow
	LevelSrc                   // once per source endpoint
	LevelDst                   // once per destination endpoint
	LevelPair                  // once per endpoint pair + proto + dst port
	LevelAttr                  // once per attribute combination
	LevelPairAttr              // once per (pair, attributes)
	LevelSrcPort               // once per source port value
	LevelRecord                // once per flow
)

// LevelOf returns the level of a set of fields.
func LevelOf(fields []string) Level {
	var c uint8
	for _, f := range fields {
		c |= 1 << ClassOf(f)
	}
	has := func(k FieldClass) bool { return c&(1<<k) != 0 }
	pairish := has(ClassSrc) && has(ClassDst) || has(ClassPair)
	switch {
	case has(ClassRecord) || has(ClassSrcPort) && c != 1<<ClassSrcPort:
		return LevelRecord
	case has(ClassSrcPort):
		return LevelSrcPort
	case has(ClassAttr) && (pairish || has(ClassSrc) || has(ClassDst)):
		return LevelPairAttr
	case has(ClassAttr):
		return LevelAttr
	case pairish:
		return LevelPair
	case has(ClassSrc):
		return LevelSrc
	case has(ClassDst):
		return LevelDst
	}
	return LevelAll
}

// Conjunct is one top-level `and` term of a query's filter.
type Conjunct struct {
	Filter *filter.Filter
	Level  Level
	// Numeric is set when the term is a plain comparison of a counter
	// with a number, which a store may evaluate on its own columns.
	Numeric *NumericCond
}

// NumericCond is `[not] Field Op N` over a counter field (bytes, packets,
// fwd.bytes, fwd.packets, rev.bytes, rev.packets, conns). Its meaning is
// the filter language's: the counter compared with N as float64.
type NumericCond struct {
	Field string
	Op    string // = != < <= > >=
	N     float64
	Not   bool
}

// Holds reports whether the condition holds for the value v.
func (c *NumericCond) Holds(v uint64) bool {
	x := float64(v)
	var r bool
	switch c.Op {
	case "=":
		r = x == c.N
	case "!=":
		r = x != c.N
	case "<":
		r = x < c.N
	case "<=":
		r = x <= c.N
	case ">":
		r = x > c.N
	default:
		r = x >= c.N
	}
	return r != c.Not
}

var numericTerm = regexp.MustCompile(`^(not )?(bytes|packets|fwd\.bytes|fwd\.packets|rev\.bytes|rev\.packets|conns) (=|!=|<|<=|>|>=) (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)$`)

// numericCond recognises a canonical term such as `fwd.bytes > 1000`.
func numericCond(term string) *NumericCond {
	m := numericTerm.FindStringSubmatch(term)
	if m == nil {
		return nil
	}
	n, err := strconv.ParseFloat(m[4], 64)
	if err != nil {
		return nil
	}
	return &NumericCond{Field: m[2], Op: m[3], N: n, Not: m[1] != ""}
}

// Query is a compiled flow search, handed to a Store.
type Query struct {
	// From and To bound the search: flows overlapping [From, To].
	From, To int64 // unix nanoseconds
	// Limit caps the number of flows returned (newest first).
	Limit int
	// Filter is nil to match every flow.
	Filter *filter.Filter
	// Conjuncts split Filter at its top-level `and`s, cheapest level
	// first: a store may evaluate each at its own level (a flow matches
	// when all do).
	Conjuncts []Conjunct
	// Context, when set, stops the search once done (the client went
	// away or a deadline passed): a store checks it between segments and
	// returns its error.
	Context context.Context
}

// Err is the error of the query's context (nil without one).
func (q *Query) Err() error {
	if q.Context == nil {
		return nil
	}
	return q.Context.Err()
}

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
	canon := f.String()
	q.Conjuncts = []Conjunct{{Filter: f, Level: LevelOf(f.Fields()), Numeric: numericCond(canon)}}
	if terms := splitAnd(canon); len(terms) > 1 {
		var cs []Conjunct
		for _, t := range terms {
			cf, err := filter.Parse(t, Schema)
			if err != nil { // cannot happen for a canonical term; keep the whole filter
				return q, nil
			}
			cs = append(cs, Conjunct{Filter: cf, Level: LevelOf(cf.Fields()), Numeric: numericCond(t)})
		}
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Level < cs[j].Level })
		q.Conjuncts = cs
	}
	return q, nil
}

// splitAnd splits a filter's canonical form (lower-case keywords, single
// spaces, parentheses only where precedence needs them) at its top-level
// "and"s: outside quotes and parentheses. A top-level "or" (which binds
// looser than "and" and so prints without parentheses) means no split.
func splitAnd(canon string) []string {
	var out []string
	depth, start := 0, 0
	inQuote := false
	for i := 0; i < len(canon); i++ {
		switch c := canon[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && strings.HasPrefix(canon[i:], " or "):
			return []string{canon}
		case depth == 0 && strings.HasPrefix(canon[i:], " and "):
			out = append(out, canon[start:i])
			i += len(" and ") - 1
			start = i + 1
		}
	}
	return append(out, canon[start:])
}

// Match reports whether f passes the query's filter (not its time range).
func (q *Query) Match(f *Flow) bool { return q.Filter == nil || q.Filter.Match(f) }
