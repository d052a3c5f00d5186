package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/store"
)

const bucketFilters = "filters"

// SavedFilter is a named inventory filter (later the building block of scopes).
type SavedFilter struct {
	Name        string    `json:"name"`
	Filter      string    `json:"filter"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

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
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) saveFilter(w http.ResponseWriter, r *http.Request) {
	var sf SavedFilter
	if err := readJSON(r, &sf); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !filterName.MatchString(sf.Name) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("name: %q must be 1-128 letters, digits, '.', '_' or '-'", sf.Name))
		return
	}
	parsed, err := filter.Parse(sf.Filter, inventory.Schema)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("filter: %w", err))
		return
	}
	sf.Filter = parsed.String()
	sf.Created = time.Now().UTC()
	b, _ := json.Marshal(sf)
	if err := s.kv.Update(func(tx store.Tx) error { return tx.Put(bucketFilters, sf.Name, b) }); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusCreated, sf)
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request) {
	sf, ok, err := s.filters.get(r.PathValue("name"))
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Errorf("no saved filter %q", r.PathValue("name")))
	default:
		writeJSON(w, http.StatusOK, sf)
	}
}

func (s *Server) deleteFilter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, ok, _ := s.filters.get(name)
	if !ok {
		writeError(w, http.StatusNotFound, errors.New("no saved filter "+fmt.Sprintf("%q", name)))
		return
	}
	if err := s.kv.Update(func(tx store.Tx) error { return tx.Delete(bucketFilters, name) }); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
