// Package vuln is Palisade's vulnerability scanner: it keeps the inventory of
// the images that pods run, pulls them by digest, inventories their packages,
// matches them against an OSV database, and publishes risk attributes on
// workloads so that filters, scopes and policies can segment by them.
//
// # Layout
//
//	image    fetch (registry, oci-layout:, docker-archive:, dir:), layer
//	         summaries, whiteouts, hostile-input bounds, digest-verified
//	         layer cache seam
//	egress   the registry allow-list and the dial-time address check
//	pkgdb    os-release, dpkg, apk, rpm (SQLite, Berkeley DB), Go build
//	         info, platform and symbols, npm, Python metadata
//	goexe    Go executables (ELF, PE, Mach-O): build info, GOOS/GOARCH,
//	         functions linked in (inlined ones included, stripped or not)
//	version  dpkg / apk / rpm / semver / PEP 440 comparators
//	osv      OSV records, CVSS v3/v4 scores, severity from aliases and
//	         qualitative scales, bbolt store, import (OSV, Debian security
//	         tracker JSON, Alpine secdb), matching
//	sbom     CycloneDX export of an ImageReport (with reachability analysis)
//	vuln     this package: the Service below, and the report types
//
// # Contract for the control plane
//
//		svc, err := vuln.Open(dataDir, vuln.Options{
//			OnAttrs: func(workloadID string, attrs map[string][]string) { ... },
//			Secrets: secretGetter, // reads Secrets and ServiceAccounts (see SecretGetter)
//		})
//		defer svc.Close()
//
//	  - Observe(ws) upserts pods (other kinds are ignored; a pod with Deleted
//	    set is forgotten; Forget(id) does the same). Each container image is
//	    keyed by digest (Container.ImageDigest, or a digest in the reference;
//	    tag-only references are resolved when pulled) and queued once.
//	    Scans run on Options.Concurrency workers (default 2), reuse layer
//	    summaries cached by layer digest, and hold at most one layer's
//	    package metadata and one executable in memory per worker.
//	  - OnAttrs(workloadID, attrs) is called, serialised, whenever a pod's
//	    attributes change: after a scan of one of its images, after
//	    ImportDB changed the database, and at once from Observe when the
//	    results are already known (e.g. after a restart). The attributes are
//	    vuln.max_cvss ("9.8"), vuln.critical and vuln.high (counts of
//	    distinct vulnerabilities, a CVE counting once) and vuln.cve (the set
//	    of CVE ids), and their reachable counterparts vuln.reachable_max_cvss,
//	    vuln.reachable_critical and vuln.reachable_cve, which leave out Go
//	    findings whose vulnerable functions are not linked into the binary
//	    (findings without reachability information stay in). A pod none of
//	    whose images has been scanned gets none.
//	  - Go findings: the binary's build information gives GOOS/GOARCH
//	    (records' imports limited to other platforms are not reported) and
//	    its symbols, read from the pclntab as govulncheck's binary mode does,
//	    mark each finding Reachable true or false (Finding.Symbols names the
//	    vulnerable functions found). Findings of several records naming the
//	    same vulnerability (by id or alias) are merged; severities come from
//	    the record's CVSS, else an aliased record's (GitHub's OSV export),
//	    else a qualitative level (Debian urgency, GitHub/Red Hat/Ubuntu
//	    severity), with Finding.SeveritySource naming it.
//	  - Platforms: a pod's images are scanned for its node's platform
//	    (Options.NodePlatform, from the node's kubernetes.io/os and
//	    kubernetes.io/arch labels; linux/amd64 or Options.Platform when
//	    unknown), so a multi-platform index is one image per platform it runs
//	    on (ImageSummary.Platform, ImageReport.Platform). OS packages are
//	    matched for the image's platform: a record entry limited to other
//	    architectures (Alpine secdb archs, arch fields of OSV records'
//	    ecosystem_specific/database_specific, a purl's arch qualifier) is not
//	    reported; the package's own architecture decides when its database
//	    records one (an i386 package on an amd64 image).
//	  - Each stored inventory carries the analyzer version that made it; one
//	    made by an older analysis (e.g. module-level Go findings, from before
//	    symbols were read) keeps its findings until its image is scanned
//	    again, which happens as soon as it is observed (after a start, or at
//	    once after a database import).
//	  - Images are pulled only from registries on Options.Registries (none
//	    by default; see package egress); every connection is checked on the
//	    address it resolves to, redirects and token endpoints included.
//	    Stored and served errors are the scanner's own words (publicError).
//	    Each scan runs under Options.ScanTimeout, within Limits (layer count,
//	    per-image memory) and a recover that fails only that scan.
//	  - Registries() lists registries from the observed image references,
//	    with NeedsCredentials when a pull was refused with every credential
//	    available. Credentials are tried in order: SetCredentials ones,
//	    the pod's imagePullSecrets, its service account's imagePullSecrets
//	    (kubernetes.io/dockerconfigjson or dockercfg), anonymous.
//	  - SetCredentials(registry, user, password) stores credentials sealed
//	    with AES-256-GCM under the key file credentials.key (0600) in the data
//	    directory; they are never returned. Images of that registry that
//	    failed are retried at once.
//	  - Images() lists the observed images grouped by registry; Image(digest)
//	    returns an ImageReport (packages and findings); Vulnerabilities(keep)
//	    lists findings across images with their workloads, for
//	    GET /api/v1/vulnerabilities?filter=F (keep is the compiled filter).
//	  - ImportDB(ctx, path, progress) imports a directory or zip of OSV JSON
//	    (or Debian tracker / Alpine secdb JSON); re-importing updates records
//	    in place. ImportDBUnder does the same for the API, reading only below
//	    Options.ImportDir, with one error for missing and forbidden paths.
//	  - Wait(ctx) blocks until the scan queue is empty (tests, demos).
//
// All result types carry JSON tags for the HTTP API:
// GET /api/v1/registries → []Registry;
// POST /api/v1/registries/{name}/credentials → SetCredentials;
// GET /api/v1/vulnerabilities → []Finding;
// GET /api/v1/images/{digest} → ImageReport.
//
//   - The layer cache (LayersDir in the data directory: one file per layer
//     summary) stays within Options.CacheMaxBytes (default 2 GiB, or a
//     quarter of the free space if less), least recently used first; a
//     layer a running scan uses is never evicted. Status() reports it with
//     the database (osv.Info: generation, records, last import time) and
//     the scan queue, for GET /api/v1/status.
//
// The data directory holds one bbolt file (vuln.db), opened by one process
// at a time: the standalone CLI (`palisade scan image`, `palisade vulndb
// import`) and a server must use different directories or take turns.
package vuln
