package inventory

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// CompactStats says what a compaction dropped and kept.
type CompactStats struct {
	Versions     int `json:"versions"`     // versions dropped (superseded, or of a dropped incarnation)
	Incarnations int `json:"incarnations"` // deleted or replaced lives dropped
	Leases       int `json:"leases"`       // ended address leases dropped
	Events       int `json:"events"`       // history entries dropped
	Kept         int `json:"kept"`         // versions rewritten to the store's log (0: not rewritten this time)
}

// Compact drops the history no question about a time at or after cutoff
// can reach, in memory and (once the dropped versions are a fifth of it)
// in the store's version log, rewritten without them:
//
//   - versions superseded at or before cutoff (the version in force at
//     cutoff and every later one stay);
//   - incarnations (lives of a workload) deleted or replaced at or before
//     cutoff, with their leases;
//   - address leases that ended at or before cutoff;
//   - history events before cutoff (a workload keeps its first one).
//
// So Lookup, WorkloadAt, ServiceFor, Get and Search answer every question
// about a time at or after cutoff exactly as before, also after a
// restart. Concurrent Apply calls are safe: the lock is held to decide and
// drop, not while the log is rewritten.
func (inv *Inventory) Compact(cutoff time.Time) (CompactStats, error) {
	inv.flushMu.Lock()
	defer inv.flushMu.Unlock()
	if err := inv.flushLocked(); err != nil {
		return CompactStats{}, err
	}
	inv.mu.Lock()
	st := inv.compactLocked(cutoff)
	// The log keeps the dropped versions until they are a fifth of it:
	// rewriting it is then worth it (a restart replays them meanwhile,
	// and the next compaction drops them again).
	inv.logDead += st.Versions
	var kept []*Workload
	if inv.kv != nil && st.Versions > 0 && inv.logDead*4 >= inv.logVersions() {
		// The log is rewritten in the order the versions were applied:
		// replaying it rebuilds the same lives and the same leases, in
		// the same order. Versions applied since the flush above are
		// pending: their own flush writes them after these.
		pending := map[*Workload]bool{}
		for _, w := range inv.pending {
			pending[w] = true
		}
		for _, inc := range inv.all {
			for _, w := range inc.versions {
				if !pending[w] {
					kept = append(kept, w)
				}
			}
		}
	}
	inv.mu.Unlock()
	slices.SortFunc(kept, func(a, b *Workload) int { return cmp.Compare(a.applied, b.applied) })
	if kept == nil {
		return st, nil
	}
	st.Kept = len(kept)
	err := inv.kv.Update(func(tx store.Tx) error {
		var old []string
		if err := tx.ForEach(bucketVersions, "", func(k string, _ []byte) error {
			old = append(old, k)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := tx.Delete(bucketVersions, k); err != nil {
				return err
			}
		}
		// Keys 1..len(kept) are below inv.seq (the log held at least as
		// many), so later flushes keep appending after them.
		for i, w := range kept {
			b, err := json.Marshal(w)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketVersions, fmt.Sprintf("%020d", i+1), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("inventory: rewrite the version log: %w", err)
	}
	inv.mu.Lock()
	inv.logDead = 0
	inv.mu.Unlock()
	return st, nil
}

// logVersions is the number of versions held in memory (the log holds
// them and logDead more); the caller holds mu.
func (inv *Inventory) logVersions() int {
	n := 0
	for _, inc := range inv.all {
		n += len(inc.versions)
	}
	return n
}

// compactLocked drops in memory what Compact describes; the caller holds
// mu for writing.
func (inv *Inventory) compactLocked(cutoff time.Time) CompactStats {
	var st CompactStats
	dropped := map[*incarnation]bool{}
	all := inv.all[:0]
	for _, inc := range inv.all {
		if !inc.ended.IsZero() && !inc.ended.After(cutoff) {
			dropped[inc] = true
			st.Incarnations++
			st.Versions += len(inc.versions)
			st.Events += len(inc.events)
			id := inc.latest().ID
			if inv.current[id] == inc {
				delete(inv.current, id)
			}
			if inc.latest().Kind == KindService {
				inv.services.drop(inc, inc.versions, nil)
			}
			if inv.externals[id] == inc {
				delete(inv.externals, id)
			}
			continue
		}
		all = append(all, inc)
		// The version in force at cutoff is the last one updated at or
		// before it; the ones before it are never in force again.
		k := 0
		for k+1 < len(inc.versions) && !inc.versions[k+1].Updated.After(cutoff) {
			k++
		}
		if k > 0 {
			if inc.latest().Kind == KindService {
				inv.services.drop(inc, inc.versions[:k], inc.versions[k:])
			}
			st.Versions += k
			inc.versions = append([]*Workload(nil), inc.versions[k:]...)
		}
		e := 1
		for e < len(inc.events) && inc.events[e].Time.Before(cutoff) {
			e++
		}
		if e > 1 {
			st.Events += e - 1
			inc.events = append(inc.events[:1:1], inc.events[e:]...)
		}
	}
	clear(inv.all[len(all):])
	inv.all = all
	for _, idx := range [...]map[netip.Addr][]*lease{inv.byIP, inv.bridges} {
		for a, ls := range idx {
			keep := ls[:0]
			for _, l := range ls {
				if dropped[l.inc] || (!l.To.IsZero() && !l.To.After(cutoff)) {
					st.Leases++
					continue
				}
				keep = append(keep, l)
			}
			if len(keep) == 0 {
				delete(idx, a)
			} else {
				clear(ls[len(keep):])
				idx[a] = keep
			}
		}
	}
	return st
}

// Retention is how long the inventory keeps history by default: 30 days,
// or the flow retention when longer, so every stored flow's ends resolve.
func Retention(flowRetention time.Duration) time.Duration {
	return max(30*24*time.Hour, flowRetention)
}
