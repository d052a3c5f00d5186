package server

import (
	"errors"
	"net/http"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Shorthands over internal/httpapi for handlers that name their status
// themselves. They answer pkg/api's one error shape; prefer returning an
// *api.Error to httpapi.WriteError in new code.

func writeJSON(w http.ResponseWriter, code int, v any) { httpapi.WriteJSON(w, code, v) }

// writeError answers err with code, unless err is an *api.Error that
// carries its own status (a 413 or 415 from readJSON, say). A 500 sends a
// generic text and logs err.
func writeError(w http.ResponseWriter, code int, err error) {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status != 0 {
		httpapi.WriteError(w, ae)
		return
	}
	if code >= 500 {
		httpapi.WriteError(w, err)
		return
	}
	e := &api.Error{Status: code, Message: err.Error()}
	var fe *filter.Error
	if errors.As(err, &fe) {
		e.Position = fe.Pos
	}
	httpapi.WriteError(w, e)
}

// readJSON decodes a JSON request body (see httpapi.ReadJSON).
func readJSON(r *http.Request, v any) error { return httpapi.ReadJSON(nil, r, v, 0) }
