// Package audit keeps the record of every change made through the API:
// who, what, when, the outcome, and the state before and after.
package audit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

const bucket = "audit"

// Record is one change.
type Record struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Who    string          `json:"who"`
	Role   string          `json:"role,omitempty"`
	Action string          `json:"action"` // "POST /api/v1/filters"
	Path   string          `json:"path"`   // the request's path
	Status int             `json:"status"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Log is the audit log in the store. It keeps the newest Max records.
type Log struct {
	kv  store.KV
	max uint64
	mu  sync.Mutex
	seq uint64
}

// DefaultMax is how many records a Log keeps by default.
const DefaultMax = 200_000

func key(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// Open opens the log; max <= 0 keeps DefaultMax records.
func Open(kv store.KV, max int) (*Log, error) {
	if max <= 0 {
		max = DefaultMax
	}
	l := &Log{kv: kv, max: uint64(max)}
	err := kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucket, "", func(k string, _ []byte) error {
			n, err := strconv.ParseUint(k, 10, 64) // zero-padded decimal
			if err == nil {
				l.seq = max64(l.seq, n)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return l, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// Append stores r (Seq and, when zero, Time are set here).
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	r.Seq = l.seq
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return l.kv.Update(func(tx store.Tx) error {
		if err := tx.Put(bucket, key(r.Seq), b); err != nil {
			return err
		}
		if r.Seq > l.max {
			return tx.Delete(bucket, key(r.Seq-l.max))
		}
		return nil
	})
}

// Query selects records.
type Query struct {
	Since time.Time // records at or after (zero: all)
	Who   string    // exact principal (empty: all)
	Path  string    // path prefix (empty: all)
	Limit int       // newest Limit records (0: 100)
}

// List returns the newest records matching q, oldest first.
func (l *Log) List(q Query) ([]Record, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var all []Record
	err := l.kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucket, "", func(_ string, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) != nil {
				return nil
			}
			if (!q.Since.IsZero() && r.Time.Before(q.Since)) || (q.Who != "" && r.Who != q.Who) || !strings.HasPrefix(r.Path, q.Path) {
				return nil
			}
			all = append(all, r)
			if len(all) > 2*q.Limit {
				all = append(all[:0], all[len(all)-q.Limit:]...)
			}
			return nil
		})
	})
	if len(all) > q.Limit {
		all = all[len(all)-q.Limit:]
	}
	return all, err
}

// secretKeys are JSON keys whose values never reach the log.
var secretKeys = map[string]bool{"password": true, "token": true, "secret": true, "enrollToken": true, "privateKey": true}

// Redact returns data (JSON) with secret values replaced and at most
// limit bytes; what is not JSON is kept as a string, shortened.
func Redact(data []byte, limit int) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		s := string(data)
		if len(s) > 256 {
			s = s[:256] + "..."
		}
		b, _ := json.Marshal(s)
		return b
	}
	v = redact(v)
	b, _ := json.Marshal(v)
	if len(b) > limit {
		b, _ = json.Marshal(fmt.Sprintf("(%d bytes of JSON, not kept)", len(b)))
	}
	return b
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if secretKeys[k] {
				x[k] = "[redacted]"
			} else {
				x[k] = redact(e)
			}
		}
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
	}
	return v
}
