package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/k8s"
	"github.com/palisade-dev/palisade/internal/vuln"
	"github.com/palisade-dev/palisade/pkg/api"
)

// startScanner opens the vulnerability service, feeds it the inventory's
// pods and publishes its vuln.* attributes back onto workloads.
func (s *Server) startScanner(ctx context.Context, dir string) error {
	var secrets vuln.SecretGetter
	if len(s.cfg.Clusters) > 0 {
		// Pull secrets are read from the first cluster; per-cluster
		// credentials arrive with multi-cluster scanning.
		cs, err := kubernetes.NewForConfig(s.cfg.Clusters[0].Config)
		if err != nil {
			return err
		}
		secrets = kubeSecrets{cs}
	}
	svc, err := vuln.Open(dir, vuln.Options{
		Secrets:       secrets,
		Registries:    s.cfg.ScanRegistries,
		ImportDir:     s.cfg.VulnImportDir,
		CacheMaxBytes: s.cfg.ScanCacheMaxBytes,
		OnAttrs:       func(id string, attrs map[string][]string) { s.Inventory.SetAttrs(id, "vuln.", attrs) },
		// A pod's images are scanned for its node's platform.
		NodePlatform: func(cluster, node string) (v1.Platform, bool) {
			if w, _, ok := s.Inventory.Get(k8s.ID(cluster, inventory.KindNode, "", node)); ok && w.Deleted == nil {
				return vuln.PlatformFromNodeLabels(w.Labels)
			}
			return v1.Platform{}, false
		},
	})
	if err != nil {
		return fmt.Errorf("vulnerability scanner: %w", err)
	}
	s.Vuln = svc
	// The inventory calls subscribers synchronously; hand pods over through a
	// queue so the scanner's locks never nest inside an inventory update.
	queue := make(chan inventory.Workload, 4096)
	s.Inventory.Subscribe(func(w *inventory.Workload) {
		if w.Kind != inventory.KindPod {
			return
		}
		select {
		case queue <- *w:
		default:
			// A burst larger than the queue: the periodic full feed catches up.
		}
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		full := time.NewTicker(time.Minute)
		defer full.Stop()
		feedAll := func() {
			var ws []inventory.Workload
			for _, w := range s.Inventory.Search(podsOnly, inventory.SearchOptions{}) {
				ws = append(ws, *w)
			}
			svc.Observe(ws)
		}
		feedAll()
		for {
			select {
			case <-ctx.Done():
				return
			case w := <-queue:
				if w.Deleted != nil {
					svc.Forget(w.ID)
				} else {
					svc.Observe([]inventory.Workload{w})
				}
			case <-full.C:
				feedAll()
			}
		}
	}()
	return nil
}

var podsOnly, _ = filter.Parse("kind = pod", inventory.Schema)

type kubeSecrets struct{ cs kubernetes.Interface }

func (k kubeSecrets) SecretData(ctx context.Context, ns, name string) (map[string][]byte, error) {
	sec, err := k.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return sec.Data, nil
}

func (k kubeSecrets) ServiceAccountPullSecrets(ctx context.Context, ns, name string) ([]string, error) {
	sa, err := k.cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out, nil
}

// findingSchema: fields of GET /api/v1/vulnerabilities?filter=F.
var findingSchema = filter.StaticSchema{Fields: []string{
	"id", "alias", "cve", "package", "source_package", "installed", "fixed", "severity",
	"score", "ecosystem", "type", "image", "workload", "reachable",
}}

type findingRecord struct{ f *vuln.Finding }

func (r findingRecord) Field(name string) (filter.Value, bool) {
	f := r.f
	one := func(s string) (filter.Value, bool) { return filter.Value{Str: s}, s != "" }
	switch name {
	case "id":
		return one(f.ID)
	case "alias":
		return filter.Value{Strs: f.Aliases, Set: true}, len(f.Aliases) > 0
	case "cve":
		c := f.CVEs()
		return filter.Value{Strs: c, Set: true}, len(c) > 0
	case "package":
		return one(f.Package)
	case "source_package":
		return one(f.SourcePackage)
	case "installed":
		return one(f.Installed)
	case "fixed":
		return one(f.Fixed)
	case "severity":
		return one(f.Severity)
	case "score":
		return filter.Value{Str: strconv.FormatFloat(f.Score, 'f', -1, 64)}, f.Score > 0
	case "ecosystem":
		return one(f.Ecosystem)
	case "type":
		return one(f.Type)
	case "image":
		return one(f.Image)
	case "workload":
		return filter.Value{Strs: f.Workloads, Set: true}, len(f.Workloads) > 0
	case "reachable": // Go findings: "true" or "false"; absent when unknown
		if f.Reachable == nil {
			return filter.Value{}, false
		}
		return filter.Value{Str: strconv.FormatBool(*f.Reachable)}, true
	}
	return filter.Value{}, false
}

func (s *Server) vulnRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/registries", Perm: auth.VulnRead, Scope: httpapi.Filtered, Handler: s.listRegistries},
		{Method: "POST", Pattern: "/api/v1/registries/{name}/credentials", Perm: auth.AdminRegistries, Handler: s.setRegistryCredentials},
		{Method: "GET", Pattern: "/api/v1/vulnerabilities", Perm: auth.VulnRead, Scope: httpapi.Filtered, Handler: s.listVulnerabilities},
		{Method: "GET", Pattern: "/api/v1/images", Perm: auth.VulnRead, Scope: httpapi.Filtered, Handler: func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, s.visibleImages(s.visibilityOf(r)))
		}},
		{Method: "GET", Pattern: "/api/v1/images/{digest}", Perm: auth.VulnRead, Scope: httpapi.Filtered, Handler: func(w http.ResponseWriter, r *http.Request) {
			rep, ok := s.Vuln.Image(r.PathValue("digest"))
			if vis := s.visibilityOf(r); ok && !vis.All() {
				// Visible when one of the image's workloads is.
				ok = false
				for _, im := range s.visibleImages(vis) {
					ok = ok || (im.Digest != "" && im.Digest == rep.Digest) || im.Image == rep.Image
				}
			}
			if !ok {
				httpapi.WriteError(w, api.NotFound("no scanned image %q", r.PathValue("digest")))
				return
			}
			httpapi.WriteJSON(w, http.StatusOK, rep)
		}},
		{Method: "POST", Pattern: "/api/v1/vulndb/import", Perm: auth.AdminVulnDB, Handler: s.importVulnDB},
	}
}

// visibleImages are the observed images with the workloads vis may see
// (images none of whose workloads it may see are left out).
func (s *Server) visibleImages(vis *visibility) []vuln.ImageSummary {
	all := s.Vuln.Images()
	if vis.All() {
		return all
	}
	out := []vuln.ImageSummary{}
	for _, im := range all {
		if im.Workloads = vis.WorkloadIDs(im.Workloads); len(im.Workloads) > 0 {
			out = append(out, im)
		}
	}
	return out
}

// listRegistries lists the registries; a restricted caller sees those of
// the images it may see, with their count.
func (s *Server) listRegistries(w http.ResponseWriter, r *http.Request) {
	regs := s.Vuln.Registries()
	if vis := s.visibilityOf(r); !vis.All() {
		count := map[string]int{}
		for _, im := range s.visibleImages(vis) {
			count[im.Registry]++
		}
		kept := []vuln.Registry{}
		for _, rg := range regs {
			if count[rg.Name] > 0 {
				rg.Images = count[rg.Name]
				kept = append(kept, rg)
			}
		}
		regs = kept
	}
	httpapi.WriteJSON(w, http.StatusOK, regs)
}

func (s *Server) setRegistryCredentials(w http.ResponseWriter, r *http.Request) {
	var req api.Credentials
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if req.Username == "" || req.Password == "" {
		httpapi.WriteError(w, api.BadRequest("username", "username and password are required"))
		return
	}
	if err := s.Vuln.SetCredentials(r.PathValue("name"), req.Username, req.Password); err != nil {
		httpapi.WriteError(w, api.BadRequest("", "%v", err))
		return
	}
	// Never echo the secret back.
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"registry": r.PathValue("name"), "status": "stored"})
}

func (s *Server) listVulnerabilities(w http.ResponseWriter, r *http.Request) {
	f, err := filter.Parse(r.URL.Query().Get("filter"), findingSchema)
	if err != nil {
		httpapi.WriteError(w, &api.Error{Status: http.StatusBadRequest, Message: "filter: " + err.Error(), Position: err.(*filter.Error).Pos, Field: "filter"})
		return
	}
	vis := s.visibilityOf(r)
	vis.takeIDs() // not under the scanner's lock
	res := s.Vuln.Vulnerabilities(func(x *vuln.Finding) bool {
		// A restricted caller sees the findings of the workloads it may
		// see, naming only those.
		if x.Workloads = vis.WorkloadIDs(x.Workloads); len(x.Workloads) == 0 {
			return false
		}
		return f.Match(findingRecord{x})
	})
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"count": len(res), "items": res})
}

func (s *Server) importVulnDB(w http.ResponseWriter, r *http.Request) {
	var req api.VulnDBImport
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if req.Path == "" {
		httpapi.WriteError(w, api.BadRequest("path", `body must be {"path": "<directory or zip of OSV JSON on the server>"}`))
		return
	}
	st, err := s.Vuln.ImportDBUnder(r.Context(), req.Path, nil)
	switch {
	case errors.Is(err, vuln.ErrImportDisabled):
		httpapi.WriteError(w, &api.Error{Status: http.StatusForbidden, Message: err.Error(), Field: "path"})
		return
	case err != nil:
		httpapi.WriteError(w, api.BadRequest("path", "%v", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}
