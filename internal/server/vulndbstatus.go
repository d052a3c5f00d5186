package server

import (
	"net/http"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/vuln"
	"github.com/palisade-dev/palisade/internal/vuln/osv"
)

// The vulnerability database's state for the console: how many advisories,
// when it was last imported and the progress of an import under way
// (POST /api/v1/vulndb/import answers only when it is done).

func init() { addRoutes((*Server).vulnDBStatusRoutes) }

func (s *Server) vulnDBStatusRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/vulndb", Perm: auth.VulnRead, Scope: httpapi.Global, Handler: s.vulnDBStatus},
	}
}

// VulnDBStatus answers GET /api/v1/vulndb.
type VulnDBStatus struct {
	osv.Info
	vuln.ImportStatus
	// Percent is the running import's progress (0-100; absent when none
	// runs or its size is not known yet).
	Percent *int `json:"percent,omitempty"`
}

func (s *Server) vulnDBStatus(w http.ResponseWriter, _ *http.Request) {
	info, err := s.Vuln.DB().Info()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := VulnDBStatus{Info: info, ImportStatus: s.Vuln.ImportStatus()}
	if r := out.Running; r != nil && r.Total > 0 {
		pct := min(100, 100*r.Done/r.Total)
		out.Percent = &pct
	}
	writeJSON(w, http.StatusOK, out)
}
