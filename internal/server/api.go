package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// maxBody bounds request bodies of the JSON API.
const maxBody = 1 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", s.getStatus)
	mux.HandleFunc("GET /api/v1/inventory", s.searchInventory)
	mux.HandleFunc("GET /api/v1/inventory/lookup", s.lookup)
	mux.HandleFunc("GET /api/v1/inventory/{id...}", s.getWorkload)
	mux.HandleFunc("POST /api/v1/external", s.putExternal)
	mux.HandleFunc("DELETE /api/v1/external/{name}", s.deleteExternal)
	mux.HandleFunc("GET /api/v1/filters", s.listFilters)
	mux.HandleFunc("POST /api/v1/filters", s.saveFilter)
	mux.HandleFunc("GET /api/v1/filters/{name}", s.getFilter)
	mux.HandleFunc("DELETE /api/v1/filters/{name}", s.deleteFilter)
	// Agents authenticate what they send; reads and the agent mode switch
	// are open until API tokens and RBAC arrive (see ROADMAP).
	s.Flows.Routes(mux, func(r *http.Request) bool {
		if r.Method != http.MethodPost {
			return true
		}
		return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+s.cfg.AgentToken)) == 1
	})
	s.followRoutes(mux)
	s.vulnRoutes(mux)
	s.policyRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return recoverer(mux)
}

// recoverer turns a handler panic into a 500 so no request takes the
// server down; the panic is logged as a bug.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				writeError(w, http.StatusInternalServerError, fmt.Errorf("internal error (logged): %v", v))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

type apiError struct {
	Error    string `json:"error"`
	Position int    `json:"position,omitempty"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	e := apiError{Error: err.Error()}
	var fe *filter.Error
	if errors.As(err, &fe) {
		e.Position = fe.Pos
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (s *Server) getStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"version":    Version,
		"started":    s.started,
		"workloads":  s.Inventory.Len(),
		"connectors": s.Connectors(),
		"flowStore":  s.flowStore.Stats(),
	})
}

// parseFilter parses the filter query parameter; errors carry the column.
func parseFilter(r *http.Request) (*filter.Filter, error) {
	src := r.URL.Query().Get("filter")
	f, err := filter.Parse(src, inventory.Schema)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	return f, nil
}

func (s *Server) searchInventory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if name := q.Get("saved"); name != "" {
		src, ok, err := s.filters.get(name)
		if err != nil || !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("no saved filter %q", name))
			return
		}
		q.Set("filter", src.Filter)
		r.URL.RawQuery = q.Encode()
	}
	f, err := parseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	opts := inventory.SearchOptions{IncludeDeleted: q.Get("include_deleted") == "true"}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %q is not a non-negative integer", l))
			return
		}
		opts.Limit = n
	}
	res := s.Inventory.Search(f, opts)
	writeJSON(w, http.StatusOK, map[string]any{"count": len(res), "items": res})
}

func (s *Server) getWorkload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wl, hist, ok := s.Inventory.Get(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no workload with id %q", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"workload": wl, "history": hist, "scopes": s.policy.workloadScopes(wl)})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ip, err := netip.ParseAddr(q.Get("ip"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an IP address", q.Get("ip")))
		return
	}
	at := time.Now()
	if v := q.Get("at"); v != "" {
		if at, err = time.Parse(time.RFC3339Nano, v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("at: %q is not an RFC 3339 time", v))
			return
		}
	}
	wl, ok := s.Inventory.Lookup(ip, at)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no workload held %s at %s", ip, at.Format(time.RFC3339)))
		return
	}
	writeJSON(w, http.StatusOK, wl)
}

type externalReq struct {
	Name   string            `json:"name"`
	CIDRs  []string          `json:"cidrs"`
	Labels map[string]string `json:"labels,omitempty"`
}

func (s *Server) putExternal(w http.ResponseWriter, r *http.Request) {
	var req externalReq
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.Name == "" || strings.ContainsAny(req.Name, "/ ") {
		writeError(w, http.StatusBadRequest, fmt.Errorf("name: %q must be non-empty, without '/' or spaces", req.Name))
		return
	}
	if len(req.CIDRs) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("cidrs: at least one IP or CIDR is required"))
		return
	}
	wl := inventory.Workload{ID: "external/" + req.Name, Kind: inventory.KindExternal, Name: req.Name, Labels: req.Labels}
	for i, c := range req.CIDRs {
		if a, err := netip.ParseAddr(c); err == nil {
			c = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("cidrs[%d]: %q is not an IP or CIDR", i, c))
			return
		}
		wl.CIDRs = append(wl.CIDRs, p.Masked().String())
	}
	s.Inventory.Apply(wl)
	got, _, _ := s.Inventory.Get(wl.ID)
	writeJSON(w, http.StatusCreated, got)
}

func (s *Server) deleteExternal(w http.ResponseWriter, r *http.Request) {
	id := "external/" + r.PathValue("name")
	if !s.Inventory.Delete(id, time.Now()) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no external workload %q", r.PathValue("name")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
