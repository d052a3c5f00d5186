package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
)

func init() { addRoutes((*Server).netpolRoutes) }

func (s *Server) netpolRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/api/v1/scopes/{name}/import/networkpolicy", Perm: auth.PolicyEdit, Scope: httpapi.Named("name"), Handler: s.importNetworkPolicy},
	}
}

// importNetworkPolicy is POST /api/v1/scopes/{name}/import/networkpolicy:
// Kubernetes NetworkPolicies from files or from a connected cluster become
// a new version of the scope (internal/policy/netpol does the work).
func (s *Server) importNetworkPolicy(w http.ResponseWriter, r *http.Request) {
	scope := r.PathValue("name")
	var req netpol.ImportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4*netpol.MaxFileSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	if (req.Cluster == "") == (len(req.Files) == 0) {
		writeError(w, http.StatusBadRequest, errors.New("give either cluster (a connected cluster's name) or files"))
		return
	}
	var (
		pols    []*networkingv1.NetworkPolicy
		skipped []netpol.Skipped
		opts    = netpol.ImportOptions{DryRun: req.DryRun, Who: who(r)}
		err     error
	)
	if req.Cluster != "" {
		cfg := s.clusterConfig(req.Cluster)
		if cfg == nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("cluster %q is not connected to this server (connected: %v)", req.Cluster, s.clusterNames()))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		client, cerr := kubernetes.NewForConfig(cfg)
		if cerr != nil {
			writeError(w, http.StatusInternalServerError, cerr)
			return
		}
		if pols, err = netpol.FromCluster(ctx, client); err != nil {
			writeError(w, http.StatusBadGateway, fmt.Errorf("cluster %s: %w", req.Cluster, err))
			return
		}
		opts.Cluster = req.Cluster
		opts.Source = "networkpolicy import: cluster " + req.Cluster
	} else {
		if pols, skipped, err = netpol.ReadFiles(req.Files, req.Namespace); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		opts.Source = "networkpolicy import: files"
	}
	res, err := netpol.Import(s.policy.repo, scope, pols, opts)
	switch {
	case errors.Is(err, netpol.ErrScopeNotFound):
		writeError(w, http.StatusNotFound, err)
		return
	case err != nil:
		var perr policy.Errors
		if errors.As(err, &perr) {
			writeError(w, http.StatusUnprocessableEntity, err)
			return
		}
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	res.Skipped = skipped
	if !res.DryRun && !res.Unchanged {
		if err := s.policy.refresh(); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) clusterConfig(name string) *rest.Config {
	for _, c := range s.cfg.Clusters {
		if c.Name == name {
			return c.Config
		}
	}
	return nil
}

func (s *Server) clusterNames() []string {
	var out []string
	for _, c := range s.cfg.Clusters {
		out = append(out, c.Name)
	}
	return out
}
