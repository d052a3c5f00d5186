package server

import (
	"testing"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// TestFilterSchemasMatchParsers: every field the schema endpoint offers is
// one the corresponding parser accepts, so completion never suggests an
// error.
func TestFilterSchemasMatchParsers(t *testing.T) {
	parsers := map[string]filter.Schema{"inventory": inventory.Schema, "flows": flow.Schema, "vulnerabilities": findingSchema}
	for kind, fs := range filterSchemas() {
		t.Run(kind, func(t *testing.T) {
			p := parsers[kind]
			if p == nil {
				t.Fatalf("no parser schema for %q", kind)
			}
			for _, f := range fs.Fields {
				if !p.ValidField(f) {
					t.Errorf("field %q offered but refused by the parser", f)
				}
			}
			for _, pre := range fs.Prefixes {
				if !p.ValidField(pre + "x") {
					t.Errorf("prefix %q offered but %q refused by the parser", pre, pre+"x")
				}
			}
		})
	}
}
