package pkgdb

import (
	"net/url"
	"strings"
)

// Package URLs (https://github.com/package-url/purl-spec) identify packages
// in SBOMs and match what other tools emit.

func purlDeb(d *Distro, p *Package) string { return purlDistro("deb", "debian", d, p) }

func purlAPK(d *Distro, p *Package) string { return purlDistro("apk", "alpine", d, p) }

// purlRPM follows the purl spec for rpm: version-release as the version,
// the epoch as a qualifier.
func purlRPM(d *Distro, p *Package) string { return purlDistro("rpm", "redhat", d, p) }

// purlDistro names a distribution package: namespace the distribution,
// qualifiers its architecture, release and (when it differs) source package.
func purlDistro(typ, defaultNS string, d *Distro, p *Package) string {
	ns := defaultNS
	if d != nil && d.ID != "" {
		ns = d.ID
	}
	q := url.Values{}
	if p.Arch != "" {
		q.Set("arch", p.Arch)
	}
	if d != nil && d.VersionID != "" {
		q.Set("distro", ns+"-"+d.VersionID)
	}
	if typ != "apk" && p.SourceName != "" && p.SourceName != p.Name {
		q.Set("upstream", p.SourceName)
	}
	ver := p.Version
	if typ == "rpm" {
		if e, rest, ok := strings.Cut(ver, ":"); ok {
			ver = rest
			q.Set("epoch", e)
		}
	}
	return purl(typ, ns, p.Name, ver, q)
}

func purlGo(module, ver string) string {
	ns, name := "", module
	if i := strings.LastIndexByte(module, '/'); i >= 0 {
		ns, name = module[:i], module[i+1:]
	}
	return purl("golang", ns, name, ver, nil)
}

func purlNPM(name, ver string) string {
	ns := ""
	if strings.HasPrefix(name, "@") {
		if i := strings.IndexByte(name, '/'); i > 0 {
			ns, name = name[:i], name[i+1:]
		}
	}
	return purl("npm", ns, name, ver, nil)
}

func purlPyPI(name, ver string) string {
	return purl("pypi", "", strings.ReplaceAll(strings.ToLower(name), "_", "-"), ver, nil)
}

func purl(typ, ns, name, ver string, q url.Values) string {
	var b strings.Builder
	b.WriteString("pkg:" + typ + "/")
	if ns != "" {
		for _, seg := range strings.Split(ns, "/") {
			b.WriteString(strings.ReplaceAll(url.PathEscape(seg), "@", "%40") + "/")
		}
	}
	b.WriteString(url.PathEscape(name))
	if ver != "" {
		b.WriteString("@" + url.PathEscape(ver))
	}
	if len(q) > 0 {
		b.WriteString("?" + q.Encode())
	}
	return b.String()
}
