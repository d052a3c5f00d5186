package server

import (
	"net/http"

	"github.com/palisade-dev/palisade/internal/flow"
)

// followRoutes serves the live flow stream (`palisade flows follow`).
func (s *Server) followRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+flow.FollowPath, s.Flows.HandleFollow)
}
