package filter

import (
	"errors"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parse parses src against schema. An empty or blank src gives a filter
// that matches every record. A nil schema accepts every well-formed field
// name, like AnySchema. Errors are *Error.
func Parse(src string, schema Schema) (*Filter, error) {
	if len(src) > MaxLength {
		return nil, errorf(utf8.RuneCountInString(src[:MaxLength])+1,
			"filter is %d bytes long; the limit is %d", len(src), MaxLength)
	}
	if schema == nil {
		schema = AnySchema{}
	}
	p := &parser{lex: lexer{src: src, col: 1}, schema: schema, seen: map[string]bool{}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return &Filter{}, nil
	}
	root, err := p.junction(true)
	if err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokEOF:
		return &Filter{root: root, fields: p.fields}, nil
	case tokRParen:
		return nil, errorf(p.tok.pos, `unexpected ")" without a matching "("`)
	}
	return nil, errorf(p.tok.pos, `expected "and", "or" or end of filter, found %s`, describe(p.tok))
}

type parser struct {
	lex    lexer
	tok    token // the next token, not consumed yet
	schema Schema
	depth  int // open parentheses and `not`s around the current position
	terms  int // conditions and in-list values so far
	fields []string
	seen   map[string]bool // fields, for addField
}

func (p *parser) advance() *Error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// is reports whether the next token is the keyword kw (lower case).
func (p *parser) is(kw string) bool {
	return p.tok.kind == tokWord && asciiEqualFold(p.tok.text, kw)
}

// term counts a condition or an in-list value against MaxTerms.
func (p *parser) term(t token) *Error {
	p.terms++
	if p.terms > MaxTerms {
		return errorf(t.pos, "filter has more than %d conditions and list values", MaxTerms)
	}
	return nil
}

// junction parses a chain of `or`s (or == true) or `and`s. Chains are kept
// flat rather than as nested binary nodes, so a long chain costs no
// recursion in evaluation or formatting; a parenthesized chain of the same
// kind is spliced in, which is why String drops such parentheses.
func (p *parser) junction(or bool) (node, *Error) {
	kw, operand := "and", p.unary
	if or {
		kw, operand = "or", func() (node, *Error) { return p.junction(false) }
	}
	x, err := operand()
	if err != nil || !p.is(kw) {
		return x, err
	}
	j := &junction{or: or}
	j.add(x)
	for p.is(kw) {
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := operand()
		if err != nil {
			return nil, err
		}
		j.add(y)
	}
	return j, nil
}

func (j *junction) add(x node) {
	if k, ok := x.(*junction); ok && k.or == j.or {
		j.xs = append(j.xs, k.xs...)
		return
	}
	j.xs = append(j.xs, x)
}

// unary parses `not unary`, `( or )` or a condition.
func (p *parser) unary() (node, *Error) {
	open := p.tok
	if !p.is("not") && open.kind != tokLParen {
		return p.condition()
	}
	if p.depth >= MaxDepth {
		return nil, errorf(open.pos, "filter is nested too deeply (more than %d parentheses and \"not\")", MaxDepth)
	}
	p.depth++
	defer func() { p.depth-- }()
	if err := p.advance(); err != nil {
		return nil, err
	}
	if open.kind == tokWord { // not
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &negation{x: x}, nil
	}
	x, err := p.junction(true)
	if err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokRParen:
		return x, p.advance()
	case tokEOF:
		return nil, errorf(open.pos, `unclosed "("`)
	}
	return nil, errorf(p.tok.pos, `expected "and", "or" or ")", found %s`, describe(p.tok))
}

// condition parses `field operator operand`.
func (p *parser) condition() (node, *Error) {
	t := p.tok
	switch {
	case t.kind != tokWord || keyword(t) != "":
		return nil, errorf(t.pos, "expected a field name, found %s", describe(t))
	case !validFieldName(t.text):
		return nil, errorf(t.pos, "invalid field name %s", quoteShort(t.text))
	case !p.schema.ValidField(t.text):
		return nil, errorf(t.pos, "unknown field %s", quoteShort(t.text))
	}
	if err := p.term(t); err != nil {
		return nil, err
	}
	p.addField(t.text)
	if err := p.advance(); err != nil {
		return nil, err
	}
	c := &condition{field: t.text}
	if p.is("not") {
		c.neg = true
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	opTok := p.tok
	switch kw := keyword(opTok); {
	case opTok.kind == tokOp && !c.neg:
		return c, p.comparison(c, opTok)
	case kw == "in":
		return c, p.in(c, opTok)
	case kw == "contains" || kw == "matches" || kw == "exists":
		return c, p.predicate(c, opTok, kw)
	case c.neg:
		return nil, errorf(opTok.pos, `expected "in", "contains", "matches" or "exists" after "not", found %s`, describe(opTok))
	}
	return nil, errorf(opTok.pos, "expected an operator after %s, found %s", quoteShort(t.text), describe(opTok))
}

func (p *parser) addField(name string) {
	if !p.seen[name] {
		p.seen[name] = true
		p.fields = append(p.fields, name)
	}
}

// value consumes the operand that must follow the token after: a quoted
// string or a bare word that is not a keyword.
func (p *parser) value(after token) (token, *Error) {
	t := p.tok
	if t.kind != tokString && (t.kind != tokWord || keyword(t) != "") {
		return token{}, errorf(t.pos, "expected value after %s, found %s", quoteShort(after.text), describe(t))
	}
	return t, p.advance()
}

// comparisons are the conditions the operator tokens stand for.
var comparisons = map[string]struct {
	op  op
	neg bool
}{
	"=": {opEq, false}, "==": {opEq, false}, "!=": {opEq, true},
	"<": {opLT, false}, "<=": {opLE, false}, ">": {opGT, false}, ">=": {opGE, false},
}

// comparison parses the operand of = == != < <= > >=; opTok is current.
func (p *parser) comparison(c *condition, opTok token) *Error {
	if err := p.advance(); err != nil {
		return err
	}
	v, err := p.value(opTok)
	if err != nil {
		return err
	}
	c.op, c.neg = comparisons[opTok.text].op, comparisons[opTok.text].neg
	if c.op == opEq {
		c.lit = newLiteral(v, false)
		return nil
	}
	n, ok := parseNumber(v.text)
	if !ok || !isNumberLiteral(v.text) {
		return errorf(v.pos, "%s is not a number", quoteShort(v.text))
	}
	c.lit = literal{kind: litNumber, text: v.text, num: n}
	return nil
}

// in parses the operand of [not] in: a parenthesized list or a CIDR.
func (p *parser) in(c *condition, inTok token) *Error {
	if err := p.advance(); err != nil {
		return err
	}
	if p.tok.kind != tokLParen {
		v, err := p.value(inTok)
		if err != nil {
			return err
		}
		prefix, perr := netip.ParsePrefix(v.text)
		if perr != nil {
			return errorf(v.pos, "%s is not a CIDR", quoteShort(v.text))
		}
		c.op = opCIDR
		c.lit = literal{kind: litCIDR, text: v.text, prefix: prefix.Masked()}
		return nil
	}
	open, after := p.tok, p.tok
	c.op = opIn
	for {
		if err := p.advance(); err != nil {
			return err
		}
		v, err := p.value(after)
		if err != nil {
			return err
		}
		if err := p.term(v); err != nil {
			return err
		}
		lit := newLiteral(v, true)
		if v.kind == tokWord && lit.kind == litString && looksLikeCIDR(v.text) {
			return errorf(v.pos, "%s is not a valid CIDR", quoteShort(v.text))
		}
		c.list = append(c.list, lit)
		switch p.tok.kind {
		case tokComma:
			after = p.tok
			continue
		case tokRParen:
			c.index()
			return p.advance()
		case tokEOF:
			return errorf(open.pos, `unclosed "("`)
		}
		return errorf(p.tok.pos, `expected "," or ")" in list, found %s`, describe(p.tok))
	}
}

// predicate parses [not] contains/matches/exists.
func (p *parser) predicate(c *condition, kwTok token, kw string) *Error {
	if err := p.advance(); err != nil {
		return err
	}
	if kw == "exists" {
		c.op = opExists
		return nil
	}
	v, err := p.value(kwTok)
	if err != nil {
		return err
	}
	c.lit = literal{kind: litString, text: v.text}
	if kw == "contains" {
		c.op = opContains
		return nil
	}
	c.op = opMatches
	if len(v.text) > MaxRegexp {
		return errorf(v.pos, "regular expression is %d bytes long; the limit is %d", len(v.text), MaxRegexp)
	}
	if re, err := syntax.Parse(v.text, syntax.Perl); err == nil {
		if prog, err := syntax.Compile(re.Simplify()); err == nil && len(prog.Inst) > maxRegexpProg {
			return errorf(v.pos, "regular expression %s is too complex (%d instructions; the limit is %d)", quoteShort(v.text), len(prog.Inst), maxRegexpProg)
		}
	}
	re, rerr := regexp.Compile(v.text)
	if rerr != nil {
		msg := rerr.Error()
		var se *syntax.Error
		if errors.As(rerr, &se) {
			msg = string(se.Code)
		}
		return errorf(v.pos, "invalid regular expression %s: %s", quoteShort(v.text), msg)
	}
	c.re = re
	return nil
}

// newLiteral interprets a value token. Quoted values are strings; bare
// numbers are numeric; bare CIDRs are CIDRs where cidrOK (in-lists).
func newLiteral(v token, cidrOK bool) literal {
	lit := literal{kind: litString, text: v.text}
	if v.kind != tokWord {
		return lit
	}
	if isNumberLiteral(v.text) {
		if n, ok := parseNumber(v.text); ok {
			lit.kind, lit.num = litNumber, n
		}
		return lit
	}
	if cidrOK && strings.IndexByte(v.text, '/') >= 0 {
		if prefix, err := netip.ParsePrefix(v.text); err == nil {
			lit.kind, lit.prefix = litCIDR, prefix.Masked()
		}
	}
	return lit
}

// looksLikeCIDR reports whether s is an IP address, a slash and something,
// i.e. a CIDR with a typo rather than a path-like string such as "a/b".
func looksLikeCIDR(s string) bool {
	addr, _, ok := strings.Cut(s, "/")
	if !ok {
		return false
	}
	_, err := netip.ParseAddr(addr)
	return err == nil
}

// isNumberLiteral reports whether s is a number as a filter may spell it:
// -?digits[.digits][e-?digits] (no '+': it is not a bare-word character).
func isNumberLiteral(s string) bool {
	return !strings.Contains(s, "+") && isDecimal(s)
}

// isDecimal reports whether s is [+-]digits[.[digits]][(e|E)[+-]digits]
// or with a leading "." instead of the first digits. It keeps words such as
// "inf", "nan" and "0x1p3", which strconv accepts, from being numbers.
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		exp := 0
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// parseNumber parses a decimal number; out-of-range values are not numbers.
func parseNumber(s string) (float64, bool) {
	if !isDecimal(s) {
		return 0, false
	}
	n, err := strconv.ParseFloat(s, 64)
	return n, err == nil
}
