package filter

import (
	"net/netip"
	"regexp"
	"strings"
)

// node is a parsed filter expression.
type node interface {
	match(r Record) bool
	format(b *strings.Builder)
}

// junction is a flat chain of `and`s or of `or`s.
type junction struct {
	or bool
	xs []node
}

func (j *junction) match(r Record) bool {
	for _, x := range j.xs {
		if x.match(r) == j.or {
			return j.or // first true for or, first false for and
		}
	}
	return !j.or
}

type negation struct{ x node }

func (n *negation) match(r Record) bool { return !n.x.match(r) }

type op uint8

const (
	opEq       op = iota // = ==; != with neg
	opIn                 // in (list)
	opCIDR               // in CIDR
	opContains           // substring of a scalar, element of a set
	opMatches            // regexp
	opExists
	opLT
	opLE
	opGT
	opGE
)

// condition is one `field operator operand`. neg turns the operator into
// its negated form (!=, not in, not contains, ...), which holds exactly
// when the positive form does not, including on a missing field.
type condition struct {
	field string
	op    op
	neg   bool
	lit   literal         // operand of every op but opIn and opExists
	list  []literal       // opIn elements, as written
	scan  []literal       // opIn elements to compare one by one
	strs  map[string]bool // opIn string elements, when there are many
	re    *regexp.Regexp  // opMatches
}

// manyStrings is the number of string elements from which an in-list
// looks them up in a map rather than comparing them one by one.
const manyStrings = 8

// index prepares an in-list for matching once all elements are parsed.
func (c *condition) index() {
	c.scan = c.list
	n := 0
	for _, l := range c.list {
		if l.kind == litString {
			n++
		}
	}
	if n < manyStrings {
		return
	}
	c.strs = make(map[string]bool, n)
	c.scan = nil
	for _, l := range c.list {
		if l.kind == litString {
			c.strs[l.text] = true
		} else {
			c.scan = append(c.scan, l)
		}
	}
}

func (c *condition) match(r Record) bool {
	v, ok := r.Field(c.field)
	if !ok {
		return c.neg
	}
	if c.op == opExists {
		return !c.neg
	}
	if !v.Set && len(v.Strs) == 0 {
		if c.holds(v.Str, false) {
			return !c.neg
		}
		return c.neg
	}
	for _, s := range v.Strs {
		if c.holds(s, v.Set) {
			return !c.neg
		}
	}
	return c.neg
}

// holds reports whether one value (a scalar or one element of a set)
// satisfies the positive form of the condition.
func (c *condition) holds(s string, set bool) bool {
	switch c.op {
	case opEq, opCIDR:
		return c.lit.matches(s)
	case opIn:
		if c.strs[s] {
			return true
		}
		for i := range c.scan {
			if c.scan[i].matches(s) {
				return true
			}
		}
		return false
	case opContains:
		if set {
			return s == c.lit.text
		}
		return strings.Contains(s, c.lit.text)
	case opMatches:
		return c.re.MatchString(s)
	}
	n, ok := parseNumber(s)
	if !ok {
		return false
	}
	switch c.op {
	case opLT:
		return n < c.lit.num
	case opLE:
		return n <= c.lit.num
	case opGT:
		return n > c.lit.num
	}
	return n >= c.lit.num
}

type litKind uint8

const (
	litString litKind = iota
	litNumber
	litCIDR
)

// literal is an operand, interpreted once at parse time.
type literal struct {
	kind   litKind
	text   string // as written, unquoted
	num    float64
	prefix netip.Prefix // masked
}

// matches reports whether s equals the literal: numerically for a number
// when s is a number too, by containment for a CIDR, else as strings.
func (l *literal) matches(s string) bool {
	switch l.kind {
	case litNumber:
		if n, ok := parseNumber(s); ok {
			return n == l.num
		}
	case litCIDR:
		return inPrefix(l.prefix, s)
	}
	return s == l.text
}

// inPrefix reports whether s is an IP address inside p or a CIDR that is a
// subnet of p (so a node's podCIDR is "in" the cluster CIDR).
func inPrefix(p netip.Prefix, s string) bool {
	if strings.IndexByte(s, '/') < 0 {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return false
		}
		if p.Addr().Is4() {
			a = a.Unmap() // ::ffff:10.0.0.1 is in 10.0.0.0/8
		}
		return p.Contains(a.WithZone(""))
	}
	q, err := netip.ParsePrefix(s)
	return err == nil && q.Bits() >= p.Bits() && p.Contains(q.Addr())
}
