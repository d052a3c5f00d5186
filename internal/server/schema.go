package server

import (
	"net/http"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/console"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
)

func init() { addRoutes((*Server).consoleRoutes) }

// consoleRoutes: the web console's static files (public: the console signs
// in with an API token and sends it on every API call) and the filter
// schemas its filter boxes complete from. Every console file sits at the
// top level, so "/{file}" never overlaps the API's "/api/".
func (s *Server) consoleRoutes() []Route {
	files := console.Handler().ServeHTTP
	return []Route{
		{Method: "GET", Pattern: "/{$}", Perm: auth.Public, Handler: files},
		{Method: "GET", Pattern: "/{file}", Perm: auth.Public, Handler: files},
		{Method: "GET", Pattern: "/api/v1/schema", Perm: auth.StatusRead, Scope: httpapi.Global, Handler: s.getSchema},
	}
}

// fieldSet lists the fields one kind of filter accepts: every name in
// Fields, and any name longer than a prefix in Prefixes (label.<key>).
type fieldSet struct {
	Fields   []string `json:"fields"`
	Prefixes []string `json:"prefixes"`
}

// flowEndpointFields are the fields of each side of a flow (src.ip,
// dst.namespace, ...); schema_test checks each against flow.Schema.
var flowEndpointFields = []string{"ip", "port", "workload", "kind", "name", "namespace", "owner.kind", "owner.name", "service", "node"}

// filterSchemas answers GET /api/v1/schema: the field names of the
// inventory, flow and vulnerability filters, so clients (the console's
// filter box) complete field names from the same lists the parser checks.
func filterSchemas() map[string]fieldSet {
	fl := fieldSet{Fields: append([]string(nil), flow.FieldNames...), Prefixes: []string{"src.label.", "dst.label."}}
	for _, side := range []string{"src.", "dst."} {
		for _, f := range flowEndpointFields {
			fl.Fields = append(fl.Fields, side+f)
		}
	}
	return map[string]fieldSet{
		"inventory":       {Fields: inventory.Fields, Prefixes: inventory.FieldPrefixes},
		"flows":           fl,
		"vulnerabilities": {Fields: findingSchema.Fields, Prefixes: []string{}},
	}
}

func (s *Server) getSchema(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, filterSchemas())
}
