package netpol

import (
	"errors"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/palisade-dev/palisade/internal/policy"
)

// File is one file of NetworkPolicies given to an import.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// ReadFiles decodes and validates files (Decode, Validate): the policies,
// and the documents of other kinds that were skipped. The first bad
// document fails the whole import with its file:line:column.
func ReadFiles(files []File, defaultNamespace string) ([]*networkingv1.NetworkPolicy, []Skipped, error) {
	var pols []*networkingv1.NetworkPolicy
	var skipped []Skipped
	seen := map[string]Pos{}
	for _, f := range files {
		srcs, skip, err := Decode(f.Name, []byte(f.Content), defaultNamespace)
		if err != nil {
			return nil, nil, err
		}
		skipped = append(skipped, skip...)
		for _, s := range srcs {
			if err := Validate(s); err != nil {
				return nil, nil, err
			}
			key := s.Policy.Namespace + "/" + s.Policy.Name
			if first, dup := seen[key]; dup {
				return nil, nil, &Error{Pos: s.At("metadata.name"), Field: "metadata.name",
					Msg: fmt.Sprintf("NetworkPolicy %s is also defined at %s", key, first)}
			}
			seen[key] = s.Pos
			pols = append(pols, s.Policy)
		}
	}
	return pols, skipped, nil
}

// ImportRequest is the body of POST /api/v1/scopes/{name}/import/networkpolicy:
// the NetworkPolicies of a cluster connected to the server, or files.
type ImportRequest struct {
	Cluster string `json:"cluster,omitempty"`
	Files   []File `json:"files,omitempty"`
	// Namespace is given to policies in files that name none ("default").
	Namespace string `json:"namespace,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
}

// ImportOptions tune Import.
type ImportOptions struct {
	Options
	DryRun bool
	Who    string // recorded with the change ("local" when empty)
}

// ImportResult is what an import did (or, dry, would do).
type ImportResult struct {
	Scope string `json:"scope"`
	// Version is the version made, or the newest one when it already
	// held exactly these intents (Unchanged).
	Version   string    `json:"version"`
	Unchanged bool      `json:"unchanged,omitempty"`
	DryRun    bool      `json:"dryRun,omitempty"`
	Policies  int       `json:"networkPolicies"`
	Intents   int       `json:"intents"`
	Skipped   []Skipped `json:"skipped,omitempty"`
	// Previous is the newest version before the import; Diff goes from it
	// to the imported content.
	Previous string          `json:"previous,omitempty"`
	Diff     []string        `json:"diff,omitempty"`
	Changes  []policy.Change `json:"changes,omitempty"`
	Content  *policy.Version `json:"content"`
}

// ErrScopeNotFound is returned when the target scope does not exist.
var ErrScopeNotFound = errors.New("scope not found")

// Import translates pols into a new version of scope in repo (through
// repo.Apply: all or nothing, diffed and audited). Importing what the
// newest version already holds changes nothing, so an import is idempotent.
func Import(repo *policy.Repo, scope string, pols []*networkingv1.NetworkPolicy, opts ImportOptions) (*ImportResult, error) {
	sc, ok := repo.Scope(scope)
	if !ok {
		return nil, fmt.Errorf("%w: %q (create it first, e.g. kind: Scope with filter cluster = \"NAME\")", ErrScopeNotFound, scope)
	}
	v, err := Translate(scope, pols, opts.Options)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{Scope: scope, Policies: len(pols), Intents: len(v.Policies), DryRun: opts.DryRun, Content: v}
	if newest, err := repo.Version(scope, ""); err == nil {
		res.Previous, res.Diff = newest.Name, policy.DiffVersions(newest, v)
		if len(res.Diff) == 0 {
			res.Version, res.Unchanged = newest.Name, true
			return res, nil
		}
	} else {
		res.Diff = policy.DiffVersions(&policy.Version{}, v)
	}
	v.Name = policy.VersionName(sc.LastVersion + 1)
	r, err := repo.Apply([]*policy.Document{{Kind: policy.KindPolicyVersion, Version: v}},
		policy.ApplyOptions{DryRun: opts.DryRun, Who: opts.Who})
	if err != nil {
		return nil, err
	}
	res.Version, res.Changes = v.Name, r.Changes
	return res, nil
}
