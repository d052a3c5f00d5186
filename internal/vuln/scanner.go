package vuln

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/osv"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
)

// scanOne pulls (or opens) src, inventories it and matches it. remoteOpts
// carry authentication for registries. The scan runs under the per-scan
// deadline, and a panic in a parser fails this scan, not the process.
func (s *Service) scanOne(ctx context.Context, src image.Source, platform v1.Platform, remoteOpts []remote.Option) (rep *ImageReport, inv *storedInventory, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ScanTimeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("image scan panicked", "image", src.String(), "panic", v, "stack", string(debug.Stack()))
			rep, inv, err = nil, nil, fmt.Errorf("%s: internal error while reading the image (a parser failed on its content)", src)
		}
	}()
	rep, inv, err = s.scan(ctx, src, platform, remoteOpts)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s: scan did not finish within %v: %w", src, s.opts.ScanTimeout, err)
	}
	return rep, inv, err
}

// probeExecutable reads Go executables; benchmarks swap in
// pkgdb.ProbeBuildInfo to measure what symbol reading costs.
var probeExecutable = pkgdb.Probe

// afterLoad is a test seam: tests make it panic to check that a failing
// parser fails one scan, not the server.
var afterLoad = func(*image.Loaded) {}

func (s *Service) scan(ctx context.Context, src image.Source, platform v1.Platform, remoteOpts []remote.Option) (*ImageReport, *storedInventory, error) {
	scratch, err := os.MkdirTemp(s.scratchRoot, "scan-*")
	if err != nil {
		return nil, nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	layers := s.layers.forScan()
	defer layers.release()
	loader := &image.Loader{
		Extractor: &image.Extractor{Keep: pkgdb.Keep, Probe: probeExecutable, Limits: s.opts.Limits, ScratchDir: scratch},
		Cache:     layers,
		Remote:    append(append([]remote.Option{}, s.remoteBase...), remoteOpts...),
		Platform:  &platform,
	}
	loaded, err := loader.Load(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	afterLoad(loaded)
	inv, err := pkgdb.Collect(loaded.FS)
	if err != nil {
		return nil, nil, inventoryError{fmt.Errorf("%s: %w", src, err)}
	}
	stored := &storedInventory{
		Image: src.String(), Digest: loaded.Digest, OS: loaded.OS, Arch: loaded.Arch, Variant: loaded.Variant,
		Platform: platform.String(), Layers: loaded.Layers, Inventory: inv, ScannedAt: time.Now().UTC(),
		Analyzer: analyzerVersion,
	}
	if src.Kind == image.KindRegistry {
		if ref, err := name.ParseReference(src.Ref); err == nil {
			stored.Registry = ref.Context().RegistryStr()
		}
	}
	rep, err := s.report(stored)
	return rep, stored, err
}

// report matches a stored inventory against the current database.
func (s *Service) report(inv *storedInventory) (*ImageReport, error) {
	info, err := s.db.Info()
	if err != nil {
		return nil, err
	}
	findings, err := Match(s.db, inv.Inventory, osv.Platform{OS: inv.OS, Arch: inv.Arch, Variant: inv.Variant})
	if err != nil {
		return nil, err
	}
	if findings == nil {
		findings = []Finding{}
	}
	pkgs := inv.Inventory.Packages
	if pkgs == nil {
		pkgs = []pkgdb.Package{}
	}
	return &ImageReport{
		Image: inv.Image, Digest: inv.Digest, Registry: inv.Registry, OS: inv.OS, Arch: inv.Arch, Variant: inv.Variant,
		Platform: inv.Platform, Distro: inv.Inventory.Distro, Layers: inv.Layers, Packages: pkgs, Findings: findings,
		Summary: Summarize(findings), Warnings: inv.Inventory.Warnings, ScannedAt: inv.ScannedAt,
		DBGeneration: info.Generation,
	}, nil
}

// ScanSource scans one image outside the cluster inventory (the standalone
// `palisade scan image` path), for Options.Platform: registry references use the stored
// credentials of their registry, if any, else anonymous access. The result
// is not added to the service's image inventory.
//
// The reference's registry is allowed for this scan in addition to the
// allow-list (the operator named it); other connections — redirects, token
// endpoints — are checked as for cluster scans.
func (s *Service) ScanSource(ctx context.Context, src image.Source) (*ImageReport, error) {
	var opts []remote.Option
	if src.Kind == image.KindRegistry {
		if ref, err := name.ParseReference(src.Ref); err == nil {
			reg := ref.Context().RegistryStr()
			p, err := s.policy.With(reg)
			if err != nil {
				return nil, err
			}
			opts = append(opts, remote.WithTransport(p.Transport()))
			if auth, ok := s.adminAuth(reg); ok {
				opts = append(opts, remote.WithAuth(auth))
			}
		}
	}
	rep, _, err := s.scanOne(ctx, src, s.platform, opts)
	return rep, err
}
