package filter

import "strings"

// StaticSchema is a Schema given by a list of field names and of prefixes
// under which any key is a field (labels, annotations, flow sides):
//
//	filter.StaticSchema{
//		Fields:   []string{"namespace", "name", "kind", "ip", "vuln.max_cvss"},
//		Prefixes: []string{"label.", "annotation."},
//	}
//
// A prefix only admits names longer than itself: "label." alone is not a
// field.
type StaticSchema struct {
	Fields   []string
	Prefixes []string
}

// ValidField implements Schema.
func (s StaticSchema) ValidField(name string) bool {
	if !validFieldName(name) {
		return false
	}
	for _, f := range s.Fields {
		if f == name {
			return true
		}
	}
	for _, p := range s.Prefixes {
		if len(name) > len(p) && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// AnySchema accepts every well-formed field name. It suits callers whose
// records have open-ended fields, and tests.
type AnySchema struct{}

// ValidField implements Schema.
func (AnySchema) ValidField(name string) bool { return validFieldName(name) }
