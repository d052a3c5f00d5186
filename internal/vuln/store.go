package vuln

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
)

// DBFile is the database file inside the data directory.
const DBFile = "vuln.db"

var (
	bucketLayers      = []byte("vuln.layers") // the layer cache of versions before the file cache
	bucketInventories = []byte("vuln.inventories")
	bucketRegistries  = []byte("vuln.registries")
	bucketCredentials = []byte("vuln.credentials")
	// bucketKeys maps image keys naming an index digest (and platform) to
	// the digest of the image scanned for them.
	bucketKeys = []byte("vuln.keys")
)

// layerFormat versions the cached layer summaries (the layer cache's
// directory is named by it): bump it when Keep or Probe change what a
// summary holds, so stale summaries are re-read.
const layerFormat = "v3:" // v2: Go executables carry platform and symbols; v3: symbols joined per package

func openDB(dataDir string) (*bolt.DB, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	p := filepath.Join(dataDir, DBFile)
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another palisade process (the database allows one at a time)", p)
		}
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketInventories, bucketRegistries, bucketCredentials, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising %s: %w", p, err)
	}
	return db, nil
}

// analyzerVersion is stamped on every stored inventory: what the image
// analysis (package inventory, Go build info and symbols, platform) of this
// build records. An inventory stamped lower — or not at all — was made by an
// older analysis and is re-scanned when its image is observed (and at once
// after a database import); until then its old findings stay published.
//
//	(none) module-level Go findings only
//	2      Go symbols and GOOS/GOARCH; image platform variant for OS-package matching
const analyzerVersion = 2

// storedInventory is what is kept per image digest: the package inventory,
// which does not change, so a database update only needs a re-match.
type storedInventory struct {
	Image    string `json:"image"`
	Digest   string `json:"digest"`
	Registry string `json:"registry,omitempty"`
	OS       string `json:"os,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Variant  string `json:"variant,omitempty"`
	// Platform is the platform asked for (a multi-platform index's choice).
	Platform  string           `json:"platform,omitempty"`
	Layers    []string         `json:"layers,omitempty"`
	Inventory *pkgdb.Inventory `json:"inventory"`
	ScannedAt time.Time        `json:"scannedAt"`
	// Analyzer is the analyzerVersion that made the inventory.
	Analyzer int `json:"analyzer,omitempty"`
}

// stale reports whether an older analysis made the inventory.
func (inv *storedInventory) stale() bool { return inv.Analyzer < analyzerVersion }

func putInventory(db *bolt.DB, inv *storedInventory) error {
	data, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInventories).Put([]byte(inv.Digest), data)
	})
}

func loadInventories(db *bolt.DB, fn func(*storedInventory)) error {
	return db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInventories).ForEach(func(k, v []byte) error {
			var inv storedInventory
			if err := json.Unmarshal(v, &inv); err != nil || inv.Inventory == nil {
				return nil // a stale format: the image is scanned again
			}
			fn(&inv)
			return nil
		})
	})
}

func putImageKey(db *bolt.DB, key, digest string) error {
	return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKeys).Put([]byte(key), []byte(digest)) })
}

func loadImageKeys(db *bolt.DB) (map[string]string, error) {
	out := map[string]string{}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	return out, err
}
