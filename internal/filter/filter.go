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
package filter

// Value is what a Record returns for one field.
//
// A field is either a scalar (one string, possibly a number or an IP) or a
// set (labels' values are scalars; `ip`, `vuln.cve`, `ports` are sets). For
// sets, `=`, `in`, `matches`, comparisons and `ip in CIDR` hold when ANY
// element satisfies them, `!=` holds when NO element equals the operand, and
// `contains` means set membership (exact element). For scalars, `contains` is
// a substring test.
type Value struct {
	Strs []string
	Set  bool
}

// Record is anything a filter can be evaluated against: a workload, a flow
// (whose fields are prefixed src./dst.), a flow endpoint.
type Record interface {
	// Field returns the value of a field and whether the record has it.
	// A missing field makes every operator false except `!=` and `not ...
	// exists` forms, which are true.
	Field(name string) (Value, bool)
}

// Schema tells the parser which field names are valid so errors are
// reported at parse time with their position.
type Schema interface {
	// ValidField reports whether name is a field of the records this
	// filter will be evaluated against (e.g. "namespace", "label.app").
	ValidField(name string) bool
}
