package server

import (
	"encoding/json"
	"net/http"
	"regexp"
	"time"

	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/store"
	"github.com/palisade-dev/palisade/pkg/api"
)

const bucketFilters = "filters"

// SavedFilter is a named inventory filter (later the building block of scopes).
type SavedFilter = api.SavedFilter

type savedFilters struct{ kv store.KV }

var filterName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

func (f *savedFilters) get(name string) (SavedFilter, bool, error) {
	var sf SavedFilter
	var found bool
	err := f.kv.View(func(tx store.Tx) error {
		b := tx.Get(bucketFilters, name)
		if b == nil {
			return nil
		}
		found = true
		return json.Unmarshal(b, &sf)
	})
	return sf, found, err
}

func (s *Server) listFilters(w http.ResponseWriter, _ *http.Request) {
	out := []SavedFilter{}
	err := s.kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketFilters, "", func(_ string, v []byte) error {
			var sf SavedFilter
			if json.Unmarshal(v, &sf) == nil {
				out = append(out, sf)
			}
			return nil
		})
	})
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) saveFilter(w http.ResponseWriter, r *http.Request) {
	var sf SavedFilter
	if err := httpapi.ReadJSON(w, r, &sf, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if !filterName.MatchString(sf.Name) {
		httpapi.WriteError(w, api.BadRequest("name", "name: %q must be 1-128 letters, digits, '.', '_' or '-'", sf.Name))
		return
	}
	parsed, err := parseFilter(sf.Filter)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	sf.Filter = parsed.String()
	sf.Created = time.Now().UTC()
	b, _ := json.Marshal(sf)
	if err := s.kv.Update(func(tx store.Tx) error { return tx.Put(bucketFilters, sf.Name, b) }); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, sf)
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request) {
	sf, ok, err := s.filters.get(r.PathValue("name"))
	switch {
	case err != nil:
		httpapi.WriteError(w, err)
	case !ok:
		httpapi.WriteError(w, api.NotFound("no saved filter %q", r.PathValue("name")))
	default:
		httpapi.WriteJSON(w, http.StatusOK, sf)
	}
}

func (s *Server) deleteFilter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, ok, _ := s.filters.get(name)
	if !ok {
		httpapi.WriteError(w, api.NotFound("no saved filter %q", name))
		return
	}
	if err := s.kv.Update(func(tx store.Tx) error { return tx.Delete(bucketFilters, name) }); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
