package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/store"
)

// Inventory is the in-memory, history-keeping index of workloads, persisted
// to a store.KV as an append-only log of workload versions.
//
// Every change is a new immutable *Workload version, so pointers handed out
// by Get, Search and Lookup stay valid and never change under the caller.
// An IP is attributed through leases: [From, To) intervals during which one
// incarnation of a workload held it. A pod deleted and its IP reused keeps
// its own lease, so lookups at an earlier time still find it.
type Inventory struct {
	mu      sync.RWMutex
	current map[string]*incarnation // by workload ID: the latest incarnation
	// all lists incarnations in creation order. Search walks it rather than
	// the map: workloads created together sit together in memory, and a
	// sequential walk is several times faster than a map's random order.
	all  []*incarnation
	byIP map[netip.Addr][]*lease // each slice ordered by From
	// bridges are the leases of nodes' bridge addresses (BridgeAddrs),
	// kept apart from byIP: they answer only for an address no workload
	// holds at the time asked.
	bridges   map[netip.Addr][]*lease
	externals map[string]*incarnation // user-defined IP/CIDR workloads, by ID
	services  serviceIndex            // service lives by endpoint address and node port (ServiceFor)

	kv      store.KV
	seq     uint64
	applied uint64      // versions applied, to order them (Workload.applied)
	logDead int         // versions dropped by Compact but still in the store's log
	pending []*Workload // versions not yet persisted
	flushMu sync.Mutex
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	subsMu sync.RWMutex
	subs   []func(*Workload)
}

// incarnation is one life of a workload ID (one Kubernetes UID).
type incarnation struct {
	id         string
	seq        uint64      // inventory.applied when it began: orders lives of one ID
	versions   []*Workload // ordered by Updated
	events     []Event
	superseded bool // a newer incarnation of the same ID exists
	// ended is when this life ended (deleted, or replaced by a newer
	// incarnation); zero while it lasts. Compact drops it after retention.
	ended time.Time
}

func (in *incarnation) latest() *Workload { return in.versions[len(in.versions)-1] }

// at returns the version in force at t (the first one if t precedes it).
// A single version answers without reading its time: a lookup that needs
// only the pointer (most workloads have one version) touches one cache
// line less.
func (in *incarnation) at(t time.Time) *Workload {
	if len(in.versions) == 1 {
		return in.versions[0]
	}
	i := sort.Search(len(in.versions), func(i int) bool { return in.versions[i].Updated.After(t) })
	if i == 0 {
		return in.versions[0]
	}
	return in.versions[i-1]
}

type lease struct {
	inc      *incarnation
	From, To time.Time // To is zero while the lease is open
}

func (l *lease) covers(t time.Time) bool {
	return !t.Before(l.From) && (l.To.IsZero() || t.Before(l.To))
}

// Event is one entry of a workload's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // created, updated, deleted
	Changes []string  `json:"changes,omitempty"`
}

const (
	bucketVersions = "inventory.versions"
	flushInterval  = 50 * time.Millisecond
)

// Open loads the inventory persisted in kv (nil: memory only) and starts
// the background writer.
func Open(kv store.KV) (*Inventory, error) {
	inv := &Inventory{
		current:   map[string]*incarnation{},
		byIP:      map[netip.Addr][]*lease{},
		bridges:   map[netip.Addr][]*lease{},
		externals: map[string]*incarnation{},
		services:  newServiceIndex(),
		kv:        kv,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if kv != nil {
		var bad int
		err := kv.View(func(tx store.Tx) error {
			return tx.ForEach(bucketVersions, "", func(k string, v []byte) error {
				var w Workload
				if err := json.Unmarshal(v, &w); err != nil {
					bad++ // a damaged record must not cost the rest of the inventory
					return nil
				}
				inv.apply(&w)
				fmt.Sscanf(k, "%d", &inv.seq)
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("inventory: load: %w", err)
		}
		if bad > 0 {
			slog.Warn("inventory: skipped unreadable stored versions", "count", bad)
		}
	}
	inv.wg.Add(1)
	go inv.writer()
	return inv, nil
}

// Close flushes pending versions and stops the writer.
func (inv *Inventory) Close() error {
	close(inv.done)
	inv.wg.Wait()
	return inv.Flush()
}

// Subscribe registers fn to be called (outside locks) with every new version.
func (inv *Inventory) Subscribe(fn func(*Workload)) {
	inv.subsMu.Lock()
	inv.subs = append(inv.subs, fn)
	inv.subsMu.Unlock()
}

// Apply records w as the state of its workload from w.Updated on (now if
// zero). A version equal to the current one is ignored (informer resyncs),
// and Apply reports whether anything changed. w.Deleted marks a deletion.
func (inv *Inventory) Apply(w Workload) bool {
	if w.Updated.IsZero() {
		w.Updated = time.Now()
	}
	normalize(&w)
	inv.mu.Lock()
	changed := inv.apply(&w)
	if changed {
		inv.pending = append(inv.pending, &w)
	}
	inv.mu.Unlock()
	if changed {
		select {
		case inv.kick <- struct{}{}:
		default:
		}
		inv.subsMu.RLock()
		for _, fn := range inv.subs {
			fn(&w)
		}
		inv.subsMu.RUnlock()
	}
	return changed
}

// apply is Apply without persistence; the caller holds mu (or is Open).
func (inv *Inventory) apply(w *Workload) bool {
	inv.applied++
	w.applied = inv.applied
	cur := inv.current[w.ID]
	var prev *Workload
	if cur != nil {
		prev = cur.latest()
	}
	switch {
	case prev == nil || (prev.Deleted != nil && w.Deleted == nil) || (prev.UID != "" && w.UID != "" && prev.UID != w.UID):
		// A new workload, or a new life of a name (a StatefulSet pod recreated).
		if w.Deleted != nil {
			return false // deletion of something never seen
		}
		if prev != nil && prev.Deleted == nil {
			inv.closeLeases(cur, prev, w.Updated)
		}
		if cur != nil {
			cur.superseded = true
			if cur.ended.IsZero() {
				cur.ended = w.Updated
			}
		}
		if w.Created.IsZero() {
			w.Created = w.Updated
		}
		cur = &incarnation{id: w.ID, seq: inv.applied}
		inv.current[w.ID] = cur
		inv.all = append(inv.all, cur)
		cur.versions = append(cur.versions, w)
		cur.events = append(cur.events, Event{Time: w.Updated, Type: "created"})
		inv.openLeases(cur, nil, w)
	case prev.Deleted != nil:
		return false // already deleted
	default:
		if w.Deleted == nil {
			changes := diff(prev, w)
			if len(changes) == 0 {
				return false
			}
			cur.events = append(cur.events, Event{Time: w.Updated, Type: "updated", Changes: changes})
		} else {
			cur.events = append(cur.events, Event{Time: *w.Deleted, Type: "deleted"})
		}
		if w.Created.IsZero() || w.Created.After(prev.Created) && !prev.Created.IsZero() {
			w.Created = prev.Created
		}
		cur.versions = append(cur.versions, w)
		if w.Deleted != nil {
			inv.closeLeases(cur, prev, *w.Deleted)
			cur.ended = *w.Deleted
		} else {
			inv.openLeases(cur, prev, w)
		}
	}
	if w.Kind == KindService {
		inv.services.add(cur, w)
	}
	if w.Kind == KindExternal {
		if w.Deleted != nil {
			delete(inv.externals, w.ID)
		} else {
			inv.externals[w.ID] = cur
		}
	}
	return true
}

// openLeases closes the leases of IPs prev held that w no longer holds and
// opens leases for IPs w holds that prev did not; the same for the
// bridge addresses of a node's pod CIDRs.
func (inv *Inventory) openLeases(inc *incarnation, prev, w *Workload) {
	var prevIPs, prevBridges []netip.Addr
	if prev != nil {
		prevIPs, prevBridges = leaseIPs(prev), bridgeIPs(prev)
	}
	moveLeases(inv.byIP, inc, prevIPs, leaseIPs(w), w.Updated)
	moveLeases(inv.bridges, inc, prevBridges, bridgeIPs(w), w.Updated)
}

// moveLeases ends inc's leases in idx of the addresses of had not in now
// and opens leases for those of now not in had, at time at.
func moveLeases(idx map[netip.Addr][]*lease, inc *incarnation, had, now []netip.Addr, at time.Time) {
	for _, a := range now {
		if !slices.Contains(had, a) {
			idx[a] = append(idx[a], &lease{inc: inc, From: at})
		}
	}
	for _, a := range had {
		if !slices.Contains(now, a) {
			endLease(idx, inc, a, at)
		}
	}
}

func (inv *Inventory) closeLeases(inc *incarnation, prev *Workload, at time.Time) {
	for _, a := range leaseIPs(prev) {
		endLease(inv.byIP, inc, a, at)
	}
	for _, a := range bridgeIPs(prev) {
		endLease(inv.bridges, inc, a, at)
	}
}

func endLease(idx map[netip.Addr][]*lease, inc *incarnation, a netip.Addr, at time.Time) {
	for _, l := range idx[a] {
		if l.inc == inc && l.To.IsZero() {
			l.To = at
		}
	}
}

// leaseIPs are the addresses that identify a workload: pod IPs (not for
// host-network pods, which share their node's), node InternalIPs, service
// clusterIPs, and single addresses of external workloads.
func leaseIPs(w *Workload) []netip.Addr {
	if w.Kind == KindNamespace || (w.Kind == KindPod && w.HostIP != "" && contains(w.IPs, w.HostIP)) {
		return nil
	}
	var out []netip.Addr
	for _, s := range w.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// BridgeAddrs are the addresses of a node's own connections to its pods
// besides its IPs: the network address and the first host address of
// each IPv4 pod CIDR, which a bridge CNI gives the node's bridge and a
// kubelet's probe leaves from. Enforcement counts them as the node's
// (compile.DefaultNodeAddrs gives the same addresses); the inventory
// attributes them to the node where no workload holds them.
func BridgeAddrs(cidrs []string) []netip.Addr {
	var out []netip.Addr
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		a := p.Masked().Addr()
		out = append(out, a, a.Next())
	}
	return out
}

// bridgeIPs are the bridge addresses of a node (none for other kinds).
func bridgeIPs(w *Workload) []netip.Addr {
	if w.Kind != KindNode {
		return nil
	}
	return BridgeAddrs(w.CIDRs)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Lookup returns the workload that held ip at time t, as it was at t. An
// address no cluster workload held falls back to the node whose pod CIDR
// had it as a bridge address (BridgeAddrs) at t, then to the most
// specific user-defined external range containing it.
func (inv *Inventory) Lookup(ip netip.Addr, t time.Time) (*Workload, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.lookup(ip, t)
}

// lookup is Lookup; the caller holds mu.
func (inv *Inventory) lookup(ip netip.Addr, t time.Time) (*Workload, bool) {
	ip = ip.Unmap()
	if l := covering(inv.byIP[ip], t); l != nil {
		return l.inc.at(t), true
	}
	if l := covering(inv.bridges[ip], t); l != nil {
		return l.inc.at(t), true
	}
	return inv.external(ip)
}

// covering is the last lease of ls that covers t, or nil.
func covering(ls []*lease, t time.Time) *lease {
	for i := len(ls) - 1; i >= 0; i-- {
		if ls[i].covers(t) {
			return ls[i]
		}
	}
	return nil
}

// Get returns the latest version of a workload (possibly deleted) and its
// history.
func (inv *Inventory) Get(id string) (*Workload, []Event, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	inc := inv.current[id]
	if inc == nil {
		return nil, nil, false
	}
	return inc.latest(), append([]Event(nil), inc.events...), true
}

// SearchOptions narrow a search.
type SearchOptions struct {
	IncludeDeleted bool
	Limit          int // 0: no limit
	// Keep, when set, must also accept a workload (a caller's visibility).
	Keep func(*Workload) bool
}

// Search returns the current workloads matching f (nil f: all), ordered by ID.
func (inv *Inventory) Search(f *filter.Filter, opts SearchOptions) []*Workload {
	out, _ := inv.SearchContext(context.Background(), f, opts)
	return out
}

// searchCheckEvery is how many workloads a search matches between two
// looks at its context.
const searchCheckEvery = 1024

// SearchContext is Search stopped with ctx's error once ctx is done (the
// client went away, a deadline passed). The read lock is held only to
// take the current versions, not while the filter runs, so a slow filter
// never stalls the connectors' writes.
func (inv *Inventory) SearchContext(ctx context.Context, f *filter.Filter, opts SearchOptions) ([]*Workload, error) {
	inv.mu.RLock()
	cur := make([]*Workload, 0, len(inv.all))
	for _, inc := range inv.all {
		if inc.superseded {
			continue
		}
		if w := inc.latest(); w.Deleted == nil || opts.IncludeDeleted {
			cur = append(cur, w)
		}
	}
	inv.mu.RUnlock()
	out := make([]*Workload, 0, 64)
	for i, w := range cur {
		if i%searchCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if (f == nil || f.Match(Record{w})) && (opts.Keep == nil || opts.Keep(w)) {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if opts.Limit > 0 && len(out) > opts.Limit {
		out = out[:opts.Limit]
	}
	return out, nil
}

// Alive returns the IDs of the live workloads of one cluster and kind, for
// reconciling after a relist.
func (inv *Inventory) Alive(cluster string, kind Kind) []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	var ids []string
	for id, inc := range inv.current {
		w := inc.latest()
		if w.Cluster == cluster && w.Kind == kind && w.Deleted == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Delete marks a workload deleted at t.
func (inv *Inventory) Delete(id string, t time.Time) bool {
	w, _, ok := inv.Get(id)
	if !ok || w.Deleted != nil {
		return false
	}
	d := *w
	d.Updated, d.Deleted = t, &t
	return inv.Apply(d)
}

// SetAttrs replaces the attributes under prefix (e.g. "vuln.") of a live
// workload with attrs, recording a new version when they differ.
func (inv *Inventory) SetAttrs(id, prefix string, attrs map[string][]string) bool {
	w, _, ok := inv.Get(id)
	if !ok || w.Deleted != nil {
		return false
	}
	n := *w
	n.Attrs = map[string][]string{}
	for k, v := range w.Attrs {
		if len(k) < len(prefix) || k[:len(prefix)] != prefix {
			n.Attrs[k] = v
		}
	}
	for k, v := range attrs {
		n.Attrs[k] = v
	}
	n.Updated = time.Now()
	return inv.Apply(n)
}

// Len returns the number of live workloads.
func (inv *Inventory) Len() int {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	n := 0
	for _, inc := range inv.current {
		if inc.latest().Deleted == nil {
			n++
		}
	}
	return n
}

func (inv *Inventory) writer() {
	defer inv.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-inv.done:
			return
		case <-t.C:
		case <-inv.kick:
			// Coalesce a burst (an initial sync) into one transaction.
			time.Sleep(flushInterval)
		}
		if err := inv.Flush(); err != nil {
			slog.Error("inventory: persist failed; will retry", "err", err)
		}
	}
}

// Flush persists pending versions now.
func (inv *Inventory) Flush() error {
	inv.flushMu.Lock()
	defer inv.flushMu.Unlock()
	return inv.flushLocked()
}

// flushLocked is Flush; the caller holds flushMu.
func (inv *Inventory) flushLocked() error {
	inv.mu.Lock()
	batch := inv.pending
	inv.pending = nil
	inv.mu.Unlock()
	if inv.kv == nil || len(batch) == 0 {
		return nil
	}
	err := inv.kv.Update(func(tx store.Tx) error {
		seq := inv.seq
		for _, w := range batch {
			b, err := json.Marshal(w)
			if err != nil {
				return err
			}
			seq++
			if err := tx.Put(bucketVersions, fmt.Sprintf("%020d", seq), b); err != nil {
				return err
			}
		}
		inv.seq = seq
		return nil
	})
	if err != nil {
		inv.mu.Lock()
		inv.pending = append(batch, inv.pending...)
		inv.mu.Unlock()
	}
	return err
}

func normalize(w *Workload) {
	sort.Strings(w.IPs)
	sort.Strings(w.CIDRs)
}
