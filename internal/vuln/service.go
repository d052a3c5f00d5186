package vuln

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/egress"
	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/osv"
)

// Options configure a Service. The zero value works for the standalone CLI.
type Options struct {
	// Concurrency is how many images are scanned at once (default 2). Each
	// scan holds at most one layer's package metadata and one executable
	// (up to 64 MiB) in memory, so memory grows with this number only.
	Concurrency int
	// OnAttrs is called when a workload's vuln.* attributes change: after
	// a scan of one of its images, and after a database import changed
	// results. Calls are serialised; they must not block for long.
	OnAttrs func(workloadID string, attrs map[string][]string)
	// Secrets, when set, lets the scanner use pods' imagePullSecrets and
	// their service accounts' imagePullSecrets.
	Secrets SecretGetter
	// Registries is the allow-list of registries images are pulled from
	// (entries as in package egress: "host", "host:port", a CIDR). Empty:
	// images are inventoried but never pulled. Every connection a pull
	// makes — redirects and token endpoints included — is checked at dial
	// time; loopback, private and link-local addresses need an entry.
	Registries []string
	// ImportDir confines ImportDBUnder (the server's POST
	// /api/v1/vulndb/import) to files below it; empty refuses every path.
	ImportDir string
	// ScanTimeout bounds one image's scan, pull included (default 10 minutes).
	ScanTimeout time.Duration
	// Platform chooses the image of multi-platform indexes when the pod's
	// node's platform is unknown, and for ScanSource (default linux/amd64).
	Platform *v1.Platform
	// NodePlatform, when set, tells the platform of a cluster's node (from
	// its kubernetes.io/os and kubernetes.io/arch labels): a pod's images
	// are scanned for the platform its node runs, so a multi-platform index
	// is scanned once per platform it runs on, and OS packages are matched
	// for that platform. ok false: the default platform.
	NodePlatform func(cluster, node string) (p v1.Platform, ok bool)
	// Limits bound the work per layer (default image.DefaultLimits).
	Limits image.Limits
	// RetryAfter is how long a failed scan waits before Observe retries it
	// (default 10 minutes). SetCredentials retries at once.
	RetryAfter time.Duration
	// CacheMaxBytes caps the layer cache's files (default: 2 GiB, or a
	// quarter of the disk's free space at start if less; logged). The least
	// recently used layers are evicted first, never one a running scan uses.
	CacheMaxBytes int64
	// ScratchDir receives temporary copies of large executables during
	// scans (default: the system temporary directory).
	ScratchDir string
	Logger     *slog.Logger
}

// Service keeps the image inventory of the observed workloads, scans their
// images, and publishes vuln.* attributes. All methods are safe for
// concurrent use.
type Service struct {
	opts        Options
	log         *slog.Logger
	bolt        *bolt.DB
	db          *osv.Store
	layers      *layerCache
	sealer      *sealer
	scratchRoot string
	remoteBase  []remote.Option
	policy      *egress.Policy
	platform    v1.Platform // the default platform

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	cbMu   sync.Mutex // serialises OnAttrs calls

	mu         sync.Mutex
	idle       *sync.Cond // signalled when pending and running drain
	images     map[string]*imageState
	workloads  map[string][]string // workload ID → image keys
	registries map[string]*Registry
	reports    map[string]*ImageReport // image key → report without Packages
	stale      map[string]bool         // image digests whose report an older analysis made
	sent       map[string]map[string][]string
	pending    []string
	queued     map[string]bool
	running    int

	imports importTracker // ImportStatus
}

type imageState struct {
	key, ref, digest, registry string
	platform                   v1.Platform
	workloads                  map[string]bool
	secrets                    map[[2]string]bool // namespace, secret name
	serviceAccounts            map[[2]string]bool // namespace, service account
	lastAttempt                time.Time
	unauthorized               bool // the last pull was refused with every credential
}

// Open opens (or creates) the data directory: vulnerability database, layer
// cache, image inventories, registries and encrypted credentials.
func Open(dataDir string, opts Options) (*Service, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 2
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = 10 * time.Minute
	}
	if opts.ScanTimeout <= 0 {
		opts.ScanTimeout = 10 * time.Minute
	}
	policy, err := egress.Parse(opts.Registries)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	bdb, err := openDB(dataDir)
	if err != nil {
		return nil, err
	}
	store, err := osv.NewStore(bdb)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	seal, err := loadSealer(dataDir)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	layers, err := openLayerCache(dataDir, bdb, opts.CacheMaxBytes, log)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		opts: opts, log: log, bolt: bdb, db: store, layers: layers, sealer: seal,
		scratchRoot: opts.ScratchDir, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		images: map[string]*imageState{}, workloads: map[string][]string{}, registries: map[string]*Registry{},
		reports: map[string]*ImageReport{}, sent: map[string]map[string][]string{}, queued: map[string]bool{},
		stale: map[string]bool{}, platform: v1.Platform{OS: "linux", Architecture: "amd64"},
	}
	if opts.Platform != nil {
		s.platform = *opts.Platform
	}
	s.idle = sync.NewCond(&s.mu)
	s.policy = policy
	s.remoteBase = append(s.remoteBase, remote.WithTransport(policy.Transport()))
	if err := s.loadState(); err != nil {
		bdb.Close()
		return nil, err
	}
	for i := 0; i < opts.Concurrency; i++ {
		s.wg.Add(1)
		go s.worker()
	}
	return s, nil
}

// loadState restores registries and re-matches the stored inventories.
func (s *Service) loadState() error {
	err := s.bolt.View(func(tx *bolt.Tx) error {
		creds := tx.Bucket(bucketCredentials)
		return tx.Bucket(bucketRegistries).ForEach(func(k, v []byte) error {
			var r Registry
			if json.Unmarshal(v, &r) == nil {
				r.HasCredentials = creds.Get(k) != nil
				s.registries[string(k)] = &r
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	return s.rematch()
}

// rematch recomputes every stored image's findings against the database.
// Inventories an older analysis made are matched too (their findings stay
// published meanwhile) and marked stale: their images are scanned again
// when observed (see maybeQueueLocked), at once for those observed already.
func (s *Service) rematch() error {
	reports := map[string]*ImageReport{}
	stale := map[string]bool{}
	var errs []error
	err := loadInventories(s.bolt, func(inv *storedInventory) {
		rep, err := s.report(inv)
		if err != nil {
			errs = append(errs, err)
			return
		}
		rep.Packages = nil
		reports[inv.Digest] = rep
		if inv.stale() {
			stale[inv.Digest] = true
		}
	})
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	keys, err := loadImageKeys(s.bolt)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range reports {
		s.reports[k] = r
	}
	maps.Copy(s.stale, stale)
	if len(stale) > 0 {
		s.log.Info("vulnerability scanner: images analysed by an older scanner version are scanned again when observed",
			"images", len(stale), "analyzer", analyzerVersion)
	}
	// Keys naming a digest and platform (a multi-platform index) share the
	// report of the image scanned for them.
	for key, digest := range keys {
		if r, ok := reports[digest]; ok {
			s.reports[key] = r
		}
	}
	// Images keyed by tag share the report of their digest.
	for key, st := range s.images {
		if st.digest != "" && key != st.digest {
			if r, ok := reports[st.digest]; ok {
				s.reports[key] = r
			}
		}
	}
	for _, st := range s.images {
		if len(st.workloads) > 0 {
			s.maybeQueueLocked(st)
		}
	}
	return nil
}

// Close stops the workers (abandoning scans in flight) and closes the
// database.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.bolt.Close()
}

// DB is the vulnerability database.
func (s *Service) DB() *osv.Store { return s.db }

// ImportDB imports OSV data (a directory or zip, see osv.Store.Import). When
// the database changed, every stored image is matched again and workloads
// whose attributes changed are reported through OnAttrs.
func (s *Service) ImportDB(ctx context.Context, path string, progress osv.Progress) (osv.ImportStats, error) {
	return s.importWith(func() (osv.ImportStats, error) { return s.db.Import(ctx, path, s.imports.begin(path, progress)) })
}

// ErrImportDisabled: ImportDBUnder without Options.ImportDir.
var ErrImportDisabled = errors.New("importing vulnerability data over the API is disabled: start the server with an import directory (--vulndb-import-dir)")

// ImportDBUnder imports a directory or zip named by path (relative to
// Options.ImportDir, or absolute inside it), reading nothing outside that
// directory — symbolic links included (os.Root). A path that is missing,
// outside the directory or unreadable gets one and the same error, so the
// API cannot be used to probe the server's file system.
func (s *Service) ImportDBUnder(ctx context.Context, path string, progress osv.Progress) (osv.ImportStats, error) {
	if s.opts.ImportDir == "" {
		return osv.ImportStats{}, ErrImportDisabled
	}
	notFound := fmt.Errorf("vulnerability data %q: no directory or zip of that name under the import directory", path)
	name := path
	if filepath.IsAbs(name) {
		base, err := filepath.Abs(s.opts.ImportDir)
		if err != nil {
			return osv.ImportStats{}, notFound
		}
		if name, err = filepath.Rel(base, path); err != nil {
			return osv.ImportStats{}, notFound
		}
	}
	name = filepath.ToSlash(filepath.Clean(name))
	if !fs.ValidPath(name) {
		return osv.ImportStats{}, notFound
	}
	root, err := os.OpenRoot(s.opts.ImportDir)
	if err != nil {
		s.log.Warn("vulnerability data import directory", "dir", s.opts.ImportDir, "err", err)
		return osv.ImportStats{}, notFound
	}
	defer root.Close()
	fsys := root.FS()
	if _, err := fs.Stat(fsys, name); err != nil {
		return osv.ImportStats{}, notFound
	}
	return s.importWith(func() (osv.ImportStats, error) {
		return s.db.ImportFS(ctx, fsys, name, s.imports.begin(name, progress))
	})
}

// importWith runs imp, re-matches stored images when the database
// changed, and records the outcome for ImportStatus.
func (s *Service) importWith(imp func() (osv.ImportStats, error)) (osv.ImportStats, error) {
	stats, err := s.importAndRematch(imp)
	s.imports.end(stats, err)
	return stats, err
}

func (s *Service) importAndRematch(imp func() (osv.ImportStats, error)) (osv.ImportStats, error) {
	before, err := s.db.Info()
	if err != nil {
		return osv.ImportStats{}, err
	}
	stats, err := imp()
	if err != nil {
		return stats, err
	}
	if stats.Info.Generation != before.Generation {
		if err := s.rematch(); err != nil {
			return stats, err
		}
		s.mu.Lock()
		ids := slices.Collect(maps.Keys(s.workloads))
		calls := s.attrCallsLocked(ids)
		s.mu.Unlock()
		s.fire(calls)
	}
	return stats, nil
}

// Observe feeds workloads from the inventory. Pods are added or updated
// (their containers' images, pull secrets and service account); a pod with
// Deleted set is forgotten. Other kinds are ignored. New images are queued
// for scanning by digest; attributes already known are published at once.
func (s *Service) Observe(ws []inventory.Workload) {
	// Node platforms are looked up before taking the lock: the callback
	// may read the inventory.
	platforms := make([]v1.Platform, len(ws))
	nodes := map[[2]string]v1.Platform{} // asked once per node
	for i := range ws {
		platforms[i] = s.platform
		w := &ws[i]
		if s.opts.NodePlatform == nil || w.Kind != inventory.KindPod || w.Node == "" {
			continue
		}
		n := [2]string{w.Cluster, w.Node}
		p, seen := nodes[n]
		if !seen {
			p = s.platform
			if np, ok := s.opts.NodePlatform(w.Cluster, w.Node); ok && np.OS != "" && np.Architecture != "" {
				p = np
			}
			nodes[n] = p
		}
		platforms[i] = p
	}
	s.mu.Lock()
	var touched []string
	for i := range ws {
		w := &ws[i]
		if w.Kind != inventory.KindPod {
			continue
		}
		if w.Deleted != nil {
			s.forgetLocked(w.ID)
			continue
		}
		touched = append(touched, w.ID)
		var keys []string
		for _, c := range w.Containers {
			st := s.imageLocked(c, platforms[i])
			if st == nil {
				continue
			}
			keys = append(keys, st.key)
			st.workloads[w.ID] = true
			for _, sec := range w.ImagePullSecrets {
				st.secrets[[2]string{w.Namespace, sec}] = true
			}
			sa := w.ServiceAccount
			if sa == "" {
				sa = "default"
			}
			st.serviceAccounts[[2]string{w.Namespace, sa}] = true
			s.maybeQueueLocked(st)
		}
		for _, old := range s.workloads[w.ID] {
			if !slices.Contains(keys, old) {
				if st := s.images[old]; st != nil {
					delete(st.workloads, w.ID)
				}
			}
		}
		s.workloads[w.ID] = keys
	}
	calls := s.attrCallsLocked(touched)
	s.mu.Unlock()
	s.fire(calls)
}

// Forget removes a workload.
func (s *Service) Forget(workloadID string) {
	s.mu.Lock()
	s.forgetLocked(workloadID)
	s.mu.Unlock()
}

func (s *Service) forgetLocked(id string) {
	for _, k := range s.workloads[id] {
		if st := s.images[k]; st != nil {
			delete(st.workloads, id)
		}
	}
	delete(s.workloads, id)
	delete(s.sent, id)
}

// imageKey parses a container's image: the key is the digest when the pod
// spec pins one or the runtime reported it, else the normalised reference;
// for a platform other than the default, followed by " " and the platform
// (a multi-platform index is a different image on each).
func imageKey(c inventory.Container, platform, def v1.Platform) (key, ref, digest, registry string, err error) {
	key, ref, digest, registry, err = imageRef(c)
	if err == nil && !platformEqual(platform, def) {
		key += " " + platform.String()
	}
	return key, ref, digest, registry, err
}

func platformEqual(a, b v1.Platform) bool {
	return a.OS == b.OS && a.Architecture == b.Architecture && a.Variant == b.Variant
}

func imageRef(c inventory.Container) (key, ref, digest, registry string, err error) {
	r, err := name.ParseReference(c.Image)
	if err != nil {
		return "", "", "", "", fmt.Errorf("image %q: %w", c.Image, err)
	}
	registry = r.Context().RegistryStr()
	digest = normalizeDigest(c.ImageDigest)
	if d, ok := r.(name.Digest); ok {
		digest = d.DigestStr()
	}
	if digest != "" {
		return digest, r.Context().Name() + "@" + digest, digest, registry, nil
	}
	return r.Name(), r.Name(), "", registry, nil
}

// normalizeDigest accepts "sha256:…", "repo@sha256:…" and
// "docker-pullable://repo@sha256:…" (what kubelet reports as imageID).
func normalizeDigest(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "sha256:") && len(s) == len("sha256:")+64 {
		return s
	}
	return ""
}

func (s *Service) imageLocked(c inventory.Container, platform v1.Platform) *imageState {
	key, ref, digest, registry, err := imageKey(c, platform, s.platform)
	if err != nil {
		s.log.Warn("vulnerability scanning: skipping container image", "err", err)
		return nil
	}
	st := s.images[key]
	if st == nil {
		st = &imageState{key: key, ref: ref, digest: digest, registry: registry, platform: platform,
			workloads: map[string]bool{}, secrets: map[[2]string]bool{}, serviceAccounts: map[[2]string]bool{}}
		s.images[key] = st
		s.registryLocked(registry)
	}
	return st
}

func (s *Service) registryLocked(name string) *Registry {
	r := s.registries[name]
	if r == nil {
		r = &Registry{Name: name}
		s.registries[name] = r
		s.persistRegistryLocked(r)
	}
	return r
}

func (s *Service) persistRegistryLocked(r *Registry) {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	err = s.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRegistries).Put([]byte(r.Name), data) })
	if err != nil {
		s.log.Warn("storing registry state", "registry", r.Name, "err", err)
	}
}

// maybeQueueLocked queues an image without a report, or whose last scan
// failed long enough ago. Images of registries off the allow-list are
// never queued.
func (s *Service) maybeQueueLocked(st *imageState) {
	if s.queued[st.key] || !s.policy.AllowsRegistry(st.registry) {
		return
	}
	if r, ok := s.reports[st.key]; ok {
		if (r.Error == "" && !s.stale[r.Digest]) || time.Since(st.lastAttempt) < s.opts.RetryAfter {
			return
		}
	}
	s.queued[st.key] = true
	s.pending = append(s.pending, st.key)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) requeueRegistryLocked(registry string) {
	for _, st := range s.images {
		if st.registry == registry {
			if r, ok := s.reports[st.key]; ok && r.Error != "" {
				st.lastAttempt = time.Time{}
				s.maybeQueueLocked(st)
			}
		}
	}
}

// Wait blocks until no scan is queued or running, or ctx ends.
func (s *Service) Wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.idle.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) > 0 || s.running > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.idle.Wait()
	}
	return nil
}

func (s *Service) worker() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			select {
			case <-s.ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		key := s.pending[0]
		s.pending = s.pending[1:]
		if len(s.pending) > 0 { // let another worker pick the next one
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		st := s.images[key]
		s.running++
		job := scanJob{key: key}
		if st != nil {
			job.ref, job.registry, job.platform = st.ref, st.registry, st.platform
			job.secrets = slices.Collect(maps.Keys(st.secrets))
			job.serviceAccounts = slices.Collect(maps.Keys(st.serviceAccounts))
			st.lastAttempt = time.Now()
		}
		s.mu.Unlock()

		var rep *ImageReport
		var stored *storedInventory
		var err error
		if st != nil {
			rep, stored, err = s.scanJob(job)
		}

		s.mu.Lock()
		delete(s.queued, key)
		s.running--
		var calls []attrCall
		if st != nil {
			calls = s.finishLocked(st, rep, stored, err)
		}
		if len(s.pending) == 0 && s.running == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
		s.fire(calls)
		if s.ctx.Err() != nil {
			return
		}
	}
}

type scanJob struct {
	key, ref, registry string
	platform           v1.Platform
	secrets            [][2]string
	serviceAccounts    [][2]string
}

// errUnauthorized marks pulls that every available credential failed.
var errUnauthorized = errors.New("registry refused every available credential")

func isUnauthorized(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden
	}
	return false
}

// scanJob tries the candidate credentials in order — admin-set, the pods'
// imagePullSecrets, their service accounts' — then anonymous access.
func (s *Service) scanJob(job scanJob) (*ImageReport, *storedInventory, error) {
	src := image.Source{Kind: image.KindRegistry, Ref: job.ref}
	var lastErr error
	tried := 0
	for _, auth := range s.candidateAuths(job) {
		tried++
		rep, stored, err := s.scanOne(s.ctx, src, job.platform, []remote.Option{remote.WithAuth(auth)})
		if err == nil {
			return rep, stored, nil
		}
		lastErr = err
		if !isUnauthorized(err) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%w (%d tried): %w", errUnauthorized, tried, lastErr)
}

func (s *Service) candidateAuths(job scanJob) []authn.Authenticator {
	var out []authn.Authenticator
	if a, ok := s.adminAuth(job.registry); ok {
		out = append(out, a)
	}
	if s.opts.Secrets != nil {
		secrets := append([][2]string{}, job.secrets...)
		for _, sa := range job.serviceAccounts {
			names, err := s.opts.Secrets.ServiceAccountPullSecrets(s.ctx, sa[0], sa[1])
			if err != nil {
				continue
			}
			for _, n := range names {
				secrets = append(secrets, [2]string{sa[0], n})
			}
		}
		sort.Slice(secrets, func(i, j int) bool { return secrets[i][0]+"/"+secrets[i][1] < secrets[j][0]+"/"+secrets[j][1] })
		for _, sec := range secrets {
			data, err := s.opts.Secrets.SecretData(s.ctx, sec[0], sec[1])
			if err != nil {
				s.log.Debug("imagePullSecret unreadable", "secret", sec[0]+"/"+sec[1], "err", err)
				continue
			}
			a, ok, err := DockerConfigAuth(data, job.registry)
			if err != nil {
				s.log.Warn("imagePullSecret malformed", "secret", sec[0]+"/"+sec[1], "err", err)
				continue
			}
			if ok {
				out = append(out, a)
			}
		}
	}
	return append(out, authn.Anonymous)
}

func (s *Service) finishLocked(st *imageState, rep *ImageReport, stored *storedInventory, err error) []attrCall {
	reg := s.registryLocked(st.registry)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil
		}
		s.log.Warn("image scan failed", "image", st.ref, "err", err)
		msg := publicError(st.ref, err)
		if old := s.reports[st.key]; old != nil && old.Error == "" && s.stale[old.Digest] {
			// A rescan for a newer analysis failed: the older findings stay
			// until a later attempt succeeds.
			reg.LastError = msg
			s.persistRegistryLocked(reg)
			return nil
		}
		s.reports[st.key] = &ImageReport{Image: st.ref, Digest: st.digest, Registry: st.registry,
			Packages: nil, Findings: []Finding{}, ScannedAt: time.Now().UTC(), Error: msg}
		reg.LastError = msg
		st.unauthorized = errors.Is(err, errUnauthorized)
		s.persistRegistryLocked(reg)
		return nil
	}
	rep.Registry = st.registry
	stored.Registry = st.registry
	if st.digest == "" {
		st.digest = stored.Digest
	}
	if perr := putInventory(s.bolt, stored); perr != nil {
		s.log.Warn("storing image inventory", "image", st.ref, "err", perr)
	}
	if st.key != stored.Digest && strings.HasPrefix(st.key, "sha256:") {
		// An index digest (and platform): immutable, so kept across restarts.
		if perr := putImageKey(s.bolt, st.key, stored.Digest); perr != nil {
			s.log.Warn("storing image key", "image", st.ref, "err", perr)
		}
	}
	rep.Packages = nil
	s.reports[st.key] = rep
	if stored.Digest != "" {
		s.reports[stored.Digest] = rep
		delete(s.stale, stored.Digest)
	}
	st.unauthorized = false
	reg.LastError, reg.LastScan = "", time.Now().UTC()
	s.persistRegistryLocked(reg)
	return s.attrCallsLocked(slices.Collect(maps.Keys(st.workloads)))
}

type attrCall struct {
	id    string
	attrs map[string][]string
}

// attrCallsLocked computes the attributes of workloads and returns those
// that changed since last published. Workloads none of whose images has
// been scanned successfully publish nothing yet.
func (s *Service) attrCallsLocked(ids []string) []attrCall {
	sort.Strings(ids)
	var calls []attrCall
	for _, id := range ids {
		keys, ok := s.workloads[id]
		if !ok {
			continue
		}
		var findings []Finding
		scanned := false
		for _, k := range keys {
			if r := s.reports[k]; r != nil && r.Error == "" {
				scanned = true
				findings = append(findings, r.Findings...)
			}
		}
		if !scanned {
			continue
		}
		attrs := Summarize(findings).Attrs()
		if prev, ok := s.sent[id]; ok && attrsEqual(prev, attrs) {
			continue
		}
		s.sent[id] = attrs
		calls = append(calls, attrCall{id, attrs})
	}
	return calls
}

func attrsEqual(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

func (s *Service) fire(calls []attrCall) {
	if s.opts.OnAttrs == nil || len(calls) == 0 {
		return
	}
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	for _, c := range calls {
		s.opts.OnAttrs(c.id, c.attrs)
	}
}

// Attrs returns the vuln.* attributes last published for a workload.
func (s *Service) Attrs(workloadID string) (map[string][]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.sent[workloadID]
	return a, ok
}

// Registries lists the registries of the observed images, sorted by name.
func (s *Service) Registries() []Registry {
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[string]int{}
	needs := map[string]bool{}
	for _, st := range s.images {
		if len(st.workloads) > 0 {
			count[st.registry]++
			needs[st.registry] = needs[st.registry] || st.unauthorized
		}
	}
	out := make([]Registry, 0, len(s.registries))
	for _, r := range s.registries {
		c := *r
		c.Images = count[r.Name]
		c.NeedsCredentials = needs[r.Name]
		c.Allowed = s.policy.AllowsRegistry(r.Name)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ImageSummary is one observed image in listings.
type ImageSummary struct {
	Image string `json:"image"`
	// Digest is the digest of the image scanned once scanned (for a
	// multi-platform index, its image for Platform), else the observed one.
	Digest    string   `json:"digest,omitempty"`
	Registry  string   `json:"registry"`
	Workloads []string `json:"workloads"`
	// Platform is the platform the image is scanned for (the pods' node's).
	Platform string `json:"platform"`
	Scanned  bool   `json:"scanned"`
	// Status is "scanned", "failed", "pending", or "not-allowed" (the
	// registry is not on the scan allow-list: the image is never pulled).
	Status  string  `json:"status"`
	Error   string  `json:"error,omitempty"`
	Summary Summary `json:"summary"`
}

// Images lists the observed images, grouped by registry (sorted by
// registry, then image).
func (s *Service) Images() []ImageSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ImageSummary
	for _, st := range s.images {
		if len(st.workloads) == 0 {
			continue
		}
		is := ImageSummary{Image: st.ref, Digest: st.digest, Registry: st.registry, Workloads: sortedKeys(st.workloads), Platform: st.platform.String()}
		is.Status = "pending"
		if r := s.reports[st.key]; r != nil {
			is.Scanned, is.Error, is.Summary = r.Error == "", r.Error, r.Summary
			if r.Error == "" && r.Digest != "" {
				is.Digest = r.Digest // of the image scanned (an index's entry for the platform)
			}
			is.Status = "scanned"
			if r.Error != "" {
				is.Status = "failed"
			}
		} else if !s.policy.AllowsRegistry(st.registry) {
			is.Status = "not-allowed"
		}
		out = append(out, is)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Registry != out[j].Registry {
			return out[i].Registry < out[j].Registry
		}
		return out[i].Image < out[j].Image
	})
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := slices.Collect(maps.Keys(m))
	sort.Strings(out)
	return out
}

// Image returns the full report of an image by digest (or by the
// reference it was observed under), packages included.
func (s *Service) Image(digest string) (*ImageReport, bool) {
	s.mu.Lock()
	r, ok := s.reports[digest]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	c := *r
	c.Packages = nil
	if r.Digest != "" && r.Error == "" {
		_ = s.bolt.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketInventories).Get([]byte(r.Digest)); v != nil {
				var inv storedInventory
				if json.Unmarshal(v, &inv) == nil && inv.Inventory != nil {
					c.Packages = inv.Inventory.Packages
				}
			}
			return nil
		})
	}
	return &c, true
}

// Vulnerabilities lists the findings of all observed images, each with its
// image digest and workloads, that keep accepts (nil keeps all), worst first.
func (s *Service) Vulnerabilities(keep func(*Finding) bool) []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Finding
	for key, st := range s.images {
		if len(st.workloads) == 0 {
			continue
		}
		r := s.reports[key]
		if r == nil || r.Error != "" {
			continue
		}
		wl := sortedKeys(st.workloads)
		for _, f := range r.Findings {
			f.Image = r.Digest
			f.Workloads = wl
			if keep == nil || keep(&f) {
				out = append(out, f)
			}
		}
	}
	sortFindings(out)
	return out
}

// PlatformFromNodeLabels reads a node's platform from the labels the
// kubelet sets (kubernetes.io/os, kubernetes.io/arch, or their beta.
// predecessors), for Options.NodePlatform.
func PlatformFromNodeLabels(labels map[string]string) (v1.Platform, bool) {
	get := func(k string) string {
		if v := labels["kubernetes.io/"+k]; v != "" {
			return v
		}
		return labels["beta.kubernetes.io/"+k]
	}
	p := v1.Platform{OS: get("os"), Architecture: get("arch")}
	return p, p.OS != "" && p.Architecture != ""
}

// Status is the scanner's state, for GET /api/v1/status.
type Status struct {
	// Database is the vulnerability database: generation, record count,
	// and when the last import ended.
	Database   osv.Info        `json:"database"`
	LayerCache LayerCacheStats `json:"layerCache"`
	// Images counts the observed images (one per platform for indexes);
	// Queued and Running the scans waiting and in progress; Stale the
	// reports made by an older analyzer version, awaiting a rescan.
	Images  int `json:"images"`
	Queued  int `json:"queued"`
	Running int `json:"running"`
	Stale   int `json:"stale"`
}

// Status reports the database, the layer cache and the scan queue.
func (s *Service) Status() Status {
	info, err := s.db.Info()
	if err != nil {
		s.log.Warn("vulnerability database info", "err", err)
	}
	st := Status{Database: info, LayerCache: s.layers.Stats()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, im := range s.images {
		if len(im.workloads) > 0 {
			st.Images++
		}
	}
	st.Queued, st.Running, st.Stale = len(s.pending), s.running, len(s.stale)
	return st
}
