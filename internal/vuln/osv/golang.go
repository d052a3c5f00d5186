package osv

import "encoding/json"

// GoImport is one entry of affected[].ecosystem_specific.imports in the Go
// vulnerability database: a vulnerable package, optionally limited to
// platforms, with the vulnerable functions ("F", "T.M"; none means the
// whole package).
type GoImport struct {
	Path    string   `json:"path"`
	GOOS    []string `json:"goos,omitempty"`
	GOARCH  []string `json:"goarch,omitempty"`
	Symbols []string `json:"symbols,omitempty"`
}

// GoImports returns the entry's vulnerable packages (nil when the record
// gives none, which means every package of the module).
func (af *Affected) GoImports() []GoImport {
	if len(af.EcosystemSpecific) == 0 {
		return nil
	}
	var es struct {
		Imports []GoImport `json:"imports"`
	}
	if json.Unmarshal(af.EcosystemSpecific, &es) != nil {
		return nil
	}
	return es.Imports
}

// MatchesPlatform reports whether an import applies to a binary built for
// goos/goarch: an empty list, or an unknown platform, matches everything
// (as govulncheck decides).
func (g *GoImport) MatchesPlatform(goos, goarch string) bool {
	return matchesComponent(goos, g.GOOS) && matchesComponent(goarch, g.GOARCH)
}

func matchesComponent(s string, list []string) bool {
	if s == "" || len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
