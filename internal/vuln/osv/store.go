package osv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/vuln/version"
)

var (
	bucketAdvisories = []byte("osv.advisories")
	bucketIndex      = []byte("osv.index")
	bucketMeta       = []byte("osv.meta")
	bucketAliases    = []byte("osv.aliases") // alias or id \x00 record id
	keyGeneration    = []byte("generation")
	keyCount         = []byte("count")
	keyImported      = []byte("imported") // Unix nanoseconds
)

// Store is the vulnerability database inside a bbolt file shared with the
// rest of the scanner. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// NewStore uses db, creating the store's buckets if needed.
func NewStore(db *bolt.DB) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAdvisories, bucketIndex, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketAliases) != nil {
			return nil
		}
		// A database from before the alias index: build it.
		al, err := tx.CreateBucket(bucketAliases)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketAdvisories).ForEach(func(k, v []byte) error {
			var a Advisory
			if json.Unmarshal(v, &a) != nil {
				return nil
			}
			for _, key := range aliasKeys(&a) {
				if err := al.Put(key, nil); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("vulnerability database: %w", err)
	}
	return &Store{db: db}, nil
}

// Info describes the database contents.
type Info struct {
	// Generation increases with every import that changed something;
	// results computed at an older generation are stale.
	Generation uint64 `json:"generation"`
	Advisories int    `json:"advisories"`
	// Imported is when the last import ended (zero: never).
	Imported time.Time `json:"imported,omitzero"`
}

// Info returns the current generation and record count.
func (s *Store) Info() (Info, error) {
	var info Info
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		info.Generation = getUint(m.Get(keyGeneration))
		info.Advisories = int(getUint(m.Get(keyCount)))
		if t := getUint(m.Get(keyImported)); t != 0 {
			info.Imported = time.Unix(0, int64(t)).UTC()
		}
		return nil
	})
	return info, err
}

func getUint(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(k, buf[:])
}

var pypiNorm = regexp.MustCompile(`[-_.]+`)

// NormalizeName returns the name under which the ecosystem compares package
// names: PyPI folds case and separators (PEP 503), npm and the distributions
// fold case, Go module paths are case-sensitive.
func NormalizeName(ecosystem, name string) string {
	base, _, _ := strings.Cut(ecosystem, ":")
	switch base {
	case "Go", "Maven", "crates.io":
		return name
	case "PyPI":
		return pypiNorm.ReplaceAllString(strings.ToLower(name), "-")
	}
	return strings.ToLower(name)
}

// IsScopedEcosystem reports whether records of ecosystem carry a further
// scope after it that an installed package cannot know: Red Hat records name
// a product stream and repository ("Red Hat:enterprise_linux:9::appstream"),
// while an image's os-release only says "Red Hat:enterprise_linux:9".
func IsScopedEcosystem(ecosystem string) bool {
	return strings.HasPrefix(ecosystem, "Red Hat:")
}

// EcosystemMatches reports whether a record of ecosystem rec applies to a
// package of ecosystem pkg: the same, or for scoped ecosystems rec extends
// pkg by ":" and more.
func EcosystemMatches(pkg, rec string) bool {
	return rec == pkg || (IsScopedEcosystem(pkg) && strings.HasPrefix(rec, pkg+":"))
}

// subEcosystems lists the ecosystems in the index that extend eco (and eco
// itself when present), one seek per ecosystem rather than a scan of keys.
func subEcosystems(idx *bolt.Bucket, eco string) []string {
	var out []string
	c := idx.Cursor()
	for k, _ := c.Seek([]byte(eco)); k != nil && bytes.HasPrefix(k, []byte(eco)); {
		e, _, ok := bytes.Cut(k, []byte{0})
		if !ok {
			break
		}
		if EcosystemMatches(eco, string(e)) {
			out = append(out, string(e))
		}
		k, _ = c.Seek(append(e[:len(e):len(e)], 1)) // past every key of ecosystem e
	}
	return out
}

func indexKey(ecosystem, name, id string) []byte {
	return []byte(ecosystem + "\x00" + NormalizeName(ecosystem, name) + "\x00" + id)
}

func indexKeys(a *Advisory) [][]byte {
	seen := map[string]bool{}
	var keys [][]byte
	for _, af := range a.Affected {
		k := indexKey(af.Package.Ecosystem, af.Package.Name, a.ID)
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// aliasKeys indexes a record under its id and every alias, so records of
// different sources naming the same vulnerability find each other whichever
// side lists the other.
func aliasKeys(a *Advisory) [][]byte {
	var keys [][]byte
	for _, id := range append([]string{a.ID}, a.AllAliases()...) {
		keys = append(keys, []byte(id+"\x00"+a.ID))
	}
	return keys
}

// put stores a record, replacing the index entries of a previous version;
// it reports whether anything changed.
func put(tx *bolt.Tx, a *Advisory) (changed, added bool, err error) {
	adv, idx, al := tx.Bucket(bucketAdvisories), tx.Bucket(bucketIndex), tx.Bucket(bucketAliases)
	data, err := json.Marshal(a)
	if err != nil {
		return false, false, err
	}
	old := adv.Get([]byte(a.ID))
	if old != nil {
		if bytes.Equal(old, data) {
			return false, false, nil
		}
		var prev Advisory
		if json.Unmarshal(old, &prev) == nil {
			for _, k := range indexKeys(&prev) {
				if err := idx.Delete(k); err != nil {
					return false, false, err
				}
			}
			for _, k := range aliasKeys(&prev) {
				if err := al.Delete(k); err != nil {
					return false, false, err
				}
			}
		}
	}
	if err := adv.Put([]byte(a.ID), data); err != nil {
		return false, false, err
	}
	for _, k := range indexKeys(a) {
		if err := idx.Put(k, nil); err != nil {
			return false, false, err
		}
	}
	for _, k := range aliasKeys(a) {
		if err := al.Put(k, nil); err != nil {
			return false, false, err
		}
	}
	return true, old == nil, nil
}

// Get returns the advisory with the given id.
func (s *Store) Get(id string) (*Advisory, bool) {
	var a *Advisory
	_ = s.db.View(func(tx *bolt.Tx) error {
		if data := tx.Bucket(bucketAdvisories).Get([]byte(id)); data != nil {
			var x Advisory
			if json.Unmarshal(data, &x) == nil {
				a = &x
			}
		}
		return nil
	})
	return a, a != nil
}

// Query is one installed package to match.
type Query struct {
	Ecosystem string // OSV ecosystem, e.g. "Debian:12", "Go"
	Name      string // for distributions, the source package name
	Version   string
	// Platform is the image's platform and Arch the package's own
	// architecture, if its database records one: entries limited to other
	// architectures do not match (see Affected.AppliesToPlatform).
	Platform Platform
	Arch     string
}

// Match is one advisory affecting a queried package.
type Match struct {
	Advisory *Advisory
	Affected *Affected
	Fixed    string // the lowest fixed version above the installed one, if any
	// FixedVersions lists every branch's fix the record gives for the
	// package, in version order (e.g. 1.26.9, 1.27.2).
	FixedVersions []string
	Score         Score
}

// Match returns, for each query, the advisories whose affected ranges or
// versions include the queried version. Withdrawn advisories never match.
func (s *Store) Match(qs []Query) ([][]Match, error) {
	out := make([][]Match, len(qs))
	err := s.db.View(func(tx *bolt.Tx) error {
		adv, idx := tx.Bucket(bucketAdvisories), tx.Bucket(bucketIndex)
		cache := map[string]*Advisory{}
		scoped := map[string][]string{}
		for i, q := range qs {
			ecos := []string{q.Ecosystem}
			if IsScopedEcosystem(q.Ecosystem) {
				if _, ok := scoped[q.Ecosystem]; !ok {
					scoped[q.Ecosystem] = subEcosystems(idx, q.Ecosystem)
				}
				ecos = scoped[q.Ecosystem]
			}
			seen := map[string]bool{}
			for _, eco := range ecos {
				prefix := []byte(eco + "\x00" + NormalizeName(eco, q.Name) + "\x00")
				c := idx.Cursor()
				for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
					id := string(k[len(prefix):])
					if seen[id] {
						continue
					}
					seen[id] = true
					a, ok := cache[id]
					if !ok {
						data := adv.Get([]byte(id))
						if data == nil {
							continue
						}
						a = new(Advisory)
						if err := json.Unmarshal(data, a); err != nil {
							return fmt.Errorf("advisory %s in the database: %w", id, err)
						}
						cache[id] = a
					}
					if a.Withdrawn != nil {
						continue
					}
					if m, ok := matchAdvisory(a, q); ok {
						m.Score = scoreWithAliases(tx, a, m.Affected, cache)
						out[i] = append(out[i], m)
					}
				}
			}
		}
		return nil
	})
	return out, err
}

// scoreWithAliases finds a finding's severity from every imported source:
// the record's own CVSS vectors; else the CVSS vectors of a record sharing
// an id or alias with it (GitHub's advisories in OSV format and NVD-style CVE
// records carry them, Go and distribution records mostly do not); else a
// qualitative severity of the record, then of an aliased record; else UNKNOWN.
func scoreWithAliases(tx *bolt.Tx, a *Advisory, af *Affected, cache map[string]*Advisory) Score {
	if s, ok := a.CVSSOf(af); ok {
		return s
	}
	related := relatedRecords(tx, a, cache)
	var best Score
	found := false
	for _, r := range related {
		if s, ok := r.CVSSOf(nil); ok && (!found || cvssRank(s) > cvssRank(best)) {
			best, found = s, true
		}
	}
	if found {
		return best
	}
	if s, ok := a.QualitativeOf(af); ok {
		return s
	}
	for _, r := range related {
		if s, ok := r.QualitativeOf(nil); ok {
			return s
		}
	}
	return Score{Severity: SeverityUnknown}
}

func cvssRank(s Score) int {
	if strings.HasPrefix(s.Vector, "CVSS:4.0/") {
		return 4
	}
	return 3
}

// relatedRecords returns the other records that list one of a's ids, or
// whose ids a lists, sorted by id; withdrawn ones are left out.
func relatedRecords(tx *bolt.Tx, a *Advisory, cache map[string]*Advisory) []*Advisory {
	al, adv := tx.Bucket(bucketAliases), tx.Bucket(bucketAdvisories)
	ids := map[string]bool{}
	for _, id := range append([]string{a.ID}, a.AllAliases()...) {
		prefix := []byte(id + "\x00")
		c := al.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids[string(k[len(prefix):])] = true
		}
	}
	delete(ids, a.ID)
	var out []*Advisory
	for id := range ids {
		r, ok := cache[id]
		if !ok {
			data := adv.Get([]byte(id))
			if data == nil {
				continue
			}
			r = new(Advisory)
			if json.Unmarshal(data, r) != nil {
				continue
			}
			cache[id] = r
		}
		if r.Withdrawn == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func matchAdvisory(a *Advisory, q Query) (Match, bool) {
	scheme := version.ForEcosystem(q.Ecosystem)
	name := NormalizeName(q.Ecosystem, q.Name)
	for i := range a.Affected {
		af := &a.Affected[i]
		if !EcosystemMatches(q.Ecosystem, af.Package.Ecosystem) || NormalizeName(af.Package.Ecosystem, af.Package.Name) != name {
			continue
		}
		if !af.AppliesToPlatform(q.Platform, q.Arch) {
			continue
		}
		if fixed, ok := Affects(scheme, af, q.Version); ok {
			return Match{Advisory: a, Affected: af, Fixed: fixed, FixedVersions: FixedVersions(scheme, a, af.Package)}, true
		}
	}
	return Match{}, false
}

// Affects evaluates an affected entry for version v following the OSV
// specification's algorithm: explicit versions, then SEMVER and ECOSYSTEM
// ranges (GIT ranges need commit data and are ignored). It returns the lowest
// fixed version above v when one is known.
func Affects(scheme version.Scheme, af *Affected, v string) (fixed string, affected bool) {
	for _, x := range af.Versions {
		if version.Compare(scheme, x, v) == 0 {
			affected = true
		}
	}
	for _, r := range af.Ranges {
		if r.Type != "SEMVER" && r.Type != "ECOSYSTEM" {
			continue
		}
		in, f := inRange(scheme, r.Events, v)
		if in {
			affected = true
			if f != "" && (fixed == "" || version.Compare(scheme, f, fixed) < 0) {
				fixed = f
			}
		}
	}
	if !affected {
		return "", false
	}
	return fixed, true
}

// FixedVersions lists the fixed events of every SEMVER and ECOSYSTEM range
// of the advisory's entries for pkg, deduplicated, in version order.
func FixedVersions(scheme version.Scheme, a *Advisory, pkg Package) []string {
	var out []string
	for _, af := range a.Affected {
		if af.Package.Ecosystem != pkg.Ecosystem || af.Package.Name != pkg.Name {
			continue
		}
		for _, r := range af.Ranges {
			if r.Type != "SEMVER" && r.Type != "ECOSYSTEM" {
				continue
			}
			for _, e := range r.Events {
				if e.Fixed != "" && !slices.Contains(out, e.Fixed) {
					out = append(out, e.Fixed)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return version.Compare(scheme, out[i], out[j]) < 0 })
	return out
}

// inRange walks the events in version order: introduced opens the range,
// fixed (exclusive) and last_affected (inclusive) close it.
func inRange(scheme version.Scheme, events []Event, v string) (bool, string) {
	type ev struct {
		kind byte // i, f, l
		ver  string
	}
	var evs []ev
	for _, e := range events {
		switch {
		case e.Introduced != "":
			evs = append(evs, ev{'i', e.Introduced})
		case e.Fixed != "":
			evs = append(evs, ev{'f', e.Fixed})
		case e.LastAffected != "":
			evs = append(evs, ev{'l', e.LastAffected})
		}
	}
	cmp := func(a, b string) int {
		switch {
		case a == "0" && b == "0":
			return 0
		case a == "0":
			return -1
		case b == "0":
			return 1
		}
		return version.Compare(scheme, a, b)
	}
	// Insertion sort: event lists are short and this keeps cmp's lenience
	// from ever breaking a sort invariant.
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && cmp(evs[j-1].ver, evs[j].ver) > 0; j-- {
			evs[j-1], evs[j] = evs[j], evs[j-1]
		}
	}
	affected, fixed := false, ""
	for _, e := range evs {
		c := cmp(v, e.ver)
		switch e.kind {
		case 'i':
			if c >= 0 {
				affected = true
			}
		case 'f':
			if c >= 0 {
				affected = false
			} else if affected && fixed == "" {
				fixed = e.ver
			}
		case 'l':
			if c > 0 {
				affected = false
			}
		}
	}
	if !affected {
		return false, ""
	}
	return true, fixed
}
