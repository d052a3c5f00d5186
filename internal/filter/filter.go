// Package filter implements Palisade's filter language, shared by inventory
// search, scopes, policies and flow search.
//
//	namespace = "sock-shop" and label.app in ("carts", "orders")
//	ip in 10.244.0.0/16 and not label.tier exists
//	vuln.max_cvss >= 9 or vuln.cve contains "CVE-2023-45288"
//
// A filter is parsed once against a Schema (which names the fields a record
// kind has) and then evaluated many times against Records. Parsing validates
// field names, operators and literals, so evaluation never fails.
//
// # Syntax
//
//	filter    = [ or ]                 (empty or blank: matches every record)
//	or        = and { "or" and }
//	and       = unary { "and" unary }
//	unary     = "not" unary | "(" or ")" | condition
//	condition = field ( ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") value
//	                  | ["not"] "in" ( "(" value { "," value } ")" | cidr )
//	                  | ["not"] ( "contains" value | "matches" value | "exists" ) )
//
// Keywords (and, or, not, in, contains, matches, exists) are
// case-insensitive; `not` binds tighter than `and`, which binds tighter than
// `or`. A field is a dotted name such as namespace, owner.kind, dst.port or
// label.app.kubernetes.io/name: it starts with a letter, ends with a letter
// or digit, and holds letters, digits, `.`, `/`, `-` and `_`. A value is a
// double-quoted string (escapes: \" and \\ only) or a bare word of letters,
// digits and `.` `/` `:` `-` `_` `*`. A keyword is never a bare value: write
// "in" to mean the string. `*` is an ordinary character, not a wildcard; use
// matches for patterns.
//
// # Meaning
//
// Quoting decides how a literal compares. A bare number (-12, 9.0, 1e3) is
// numeric: `=`, `!=` and in-lists compare it as float64 with record values
// that are numbers and as strings with the others, so `dst.port = 80`
// matches "80" and `vuln.max_cvss = 9` matches "9.0". A quoted "80" is always
// a string. `<`, `<=`, `>` and `>=` need a number (quoted or not) and are
// false for record values that are not numbers. A CIDR right after `in`
// (`ip in 10.244.0.0/16`, quoted or not) or a bare CIDR inside an in-list
// matches IP addresses inside it and CIDRs that are subnets of it (IPv4 or
// IPv6); a quoted CIDR inside a list, like every other element, matches by
// equality. `matches` is a Go RE2 regular expression,
// unanchored like grep: use ^ and $ to match whole values. `contains` is a
// substring test on scalars and exact membership on sets.
//
// Sets and missing fields follow Value and Record. Every negated form (`!=`,
// `not in`, `not contains`, `not matches`, `not exists`) is exactly the
// negation of its positive form, so on a missing field it is true.
//
// Inputs longer than MaxLength bytes, nested deeper than MaxDepth levels of
// parentheses and `not`, with more than MaxTerms conditions and in-list
// values, or with a regular expression longer than MaxRegexp bytes (or
// one that compiles to a huge program) are rejected with an *Error, never
// a crash.
package filter

import (
	"fmt"
	"strings"
)

// Value is what a Record returns for one field.
//
// A field is either a scalar (one string, possibly a number or an IP) or a
// set (labels' values are scalars; `ip`, `vuln.cve`, `ports` are sets). For
// sets, `=`, `in`, `matches`, comparisons and `ip in CIDR` hold when ANY
// element satisfies them, `!=` holds when NO element equals the operand, and
// `contains` means set membership (exact element). For scalars, `contains` is
// a substring test.
//
// A scalar is held in Str when Strs is empty (so reading a scalar field
// allocates nothing); a scalar with neither is the empty string.
type Value struct {
	Str  string
	Strs []string
	Set  bool
}

// Scalar returns the Value of a single-valued field.
func Scalar(s string) Value { return Value{Str: s} }

// SetOf returns the Value of a multi-valued field.
func SetOf(elems ...string) Value { return Value{Strs: elems, Set: true} }

// Record is anything a filter can be evaluated against: a workload, a flow
// (whose fields are prefixed src./dst.), a flow endpoint.
type Record interface {
	// Field returns the value of a field and whether the record has it.
	// A missing field makes every operator false except `!=` and the other
	// negated forms (`not in`, `not contains`, `not matches`, `not exists`,
	// `not <condition>`), which are true.
	Field(name string) (Value, bool)
}

// MapRecord is a Record backed by a map, for tests and simple callers.
type MapRecord map[string]Value

// Field implements Record.
func (m MapRecord) Field(name string) (Value, bool) {
	v, ok := m[name]
	return v, ok
}

// Schema tells the parser which field names are valid so errors are
// reported at parse time with their position.
type Schema interface {
	// ValidField reports whether name is a field of the records this
	// filter will be evaluated against (e.g. "namespace", "label.app").
	ValidField(name string) bool
}

// Limits on the input, so hostile filters fail with an error instead of
// exhausting the stack, memory or time: a filter's cost to evaluate is
// bounded by its terms and the size of its regular expressions.
const (
	MaxLength = 64 << 10 // bytes
	MaxDepth  = 100      // nested parentheses and `not`
	MaxTerms  = 1000     // conditions plus in-list values
	MaxRegexp = 1024     // bytes of one `matches` pattern
	// maxRegexpProg caps a compiled pattern's instructions (x{1000}
	// repetitions blow a short pattern up).
	maxRegexpProg = 20000
)

// Filter is a parsed filter. It is immutable and safe for concurrent use.
// The nil *Filter and the empty filter match every record.
type Filter struct {
	root   node     // nil for the empty filter
	fields []string // in order of first appearance, without duplicates
}

// Match reports whether r satisfies the filter. It never fails: everything
// that could go wrong was checked by Parse.
func (f *Filter) Match(r Record) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(r)
}

// String returns the canonical form of the filter: lower-case keywords,
// single spaces, quoted strings, only the parentheses precedence needs.
// Parsing it again yields the same filter (and the same String).
func (f *Filter) String() string {
	if f == nil || f.root == nil {
		return ""
	}
	var b strings.Builder
	f.root.format(&b)
	return b.String()
}

// Fields returns the fields the filter refers to, in order of first
// appearance, each once. Callers use it to fetch only what is needed or to
// tell which record kind a filter is about.
func (f *Filter) Fields() []string {
	if f == nil {
		return nil
	}
	return append([]string(nil), f.fields...)
}

// Error is a parse error. Pos is the 1-based column, counted in runes, of
// the offending token (one past the last rune for an unexpected end).
type Error struct {
	Pos int
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("column %d: %s", e.Pos, e.Msg) }

func errorf(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}
