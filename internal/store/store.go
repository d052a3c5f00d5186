// Package store is Palisade's embedded key-value storage for control-plane
// state (inventory, history, saved filters, settings). It is a thin layer
// over bbolt so callers depend on a small interface that a PostgreSQL
// implementation can satisfy later. Flow records have their own
// time-partitioned store (internal/flow/store): their volume needs it.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// KV is the storage contract: named buckets of ordered keys.
type KV interface {
	// Update runs fn in one durable read-write transaction.
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	Close() error
}

// Tx is a transaction over buckets; buckets exist once written to.
type Tx interface {
	Get(bucket, key string) []byte
	Put(bucket, key string, value []byte) error
	Delete(bucket, key string) error
	// ForEach visits keys in order, from the first key with the prefix.
	ForEach(bucket, prefix string, fn func(key string, value []byte) error) error
}

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another palisade process")

// Bolt is the embedded KV, one file in the data directory.
type Bolt struct{ db *bolt.DB }

// Open opens (creating if needed) the store at dir/palisade.db.
func Open(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "palisade.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func (b *Bolt) Update(fn func(Tx) error) error {
	return b.db.Update(func(t *bolt.Tx) error { return fn(boltTx{t}) })
}

func (b *Bolt) View(fn func(Tx) error) error {
	return b.db.View(func(t *bolt.Tx) error { return fn(boltTx{t}) })
}

func (b *Bolt) Close() error { return b.db.Close() }

type boltTx struct{ t *bolt.Tx }

func (x boltTx) Get(bucket, key string) []byte {
	bk := x.t.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (x boltTx) Put(bucket, key string, value []byte) error {
	bk, err := x.t.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), value)
}

func (x boltTx) Delete(bucket, key string) error {
	bk := x.t.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	return bk.Delete([]byte(key))
}

func (x boltTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	bk := x.t.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	c := bk.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix; k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}
