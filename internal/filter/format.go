package filter

import "strings"

func (j *junction) format(b *strings.Builder) {
	sep := " and "
	if j.or {
		sep = " or "
	}
	for i, x := range j.xs {
		if i > 0 {
			b.WriteString(sep)
		}
		// Children are never junctions of the same kind (they are
		// spliced in), and `and` binds tighter than `or`: only an `or`
		// inside an `and` needs parentheses.
		if k, ok := x.(*junction); ok && k.or && !j.or {
			formatParens(b, x)
		} else {
			x.format(b)
		}
	}
}

func (n *negation) format(b *strings.Builder) {
	b.WriteString("not ")
	if _, ok := n.x.(*junction); ok {
		formatParens(b, n.x)
	} else {
		n.x.format(b)
	}
}

func formatParens(b *strings.Builder, x node) {
	b.WriteByte('(')
	x.format(b)
	b.WriteByte(')')
}

var opNames = [...]string{
	opEq:       "=",
	opIn:       "in",
	opCIDR:     "in",
	opContains: "contains",
	opMatches:  "matches",
	opExists:   "exists",
	opLT:       "<",
	opLE:       "<=",
	opGT:       ">",
	opGE:       ">=",
}

func (c *condition) format(b *strings.Builder) {
	b.WriteString(c.field)
	switch {
	case c.neg && c.op == opEq:
		b.WriteString(" !=")
	case c.neg:
		b.WriteString(" not ")
		b.WriteString(opNames[c.op])
	default:
		b.WriteByte(' ')
		b.WriteString(opNames[c.op])
	}
	switch c.op {
	case opExists:
		return
	case opIn:
		b.WriteString(" (")
		for i := range c.list {
			if i > 0 {
				b.WriteString(", ")
			}
			c.list[i].format(b)
		}
		b.WriteByte(')')
		return
	}
	b.WriteByte(' ')
	c.lit.format(b)
}

// format writes numbers and CIDRs bare, as they must be written to keep
// their meaning, and strings quoted.
func (l *literal) format(b *strings.Builder) {
	if l.kind != litString {
		b.WriteString(l.text)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(l.text); i++ {
		if c := l.text[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l.text[i])
	}
	b.WriteByte('"')
}
