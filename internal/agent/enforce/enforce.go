// Package enforce programs compiled rule sets (internal/ruleset) into
// iptables and ipset in a node's network namespace and in each of its
// pods' namespaces. It knows the kernel and nothing about policy.
//
// Contract with the rest of the namespace:
//   - Palisade owns the chains PALISADE-IN, PALISADE-OUT, PALISADE-FWD and
//     the ipsets named PALISADE-*; it adds one jump to each from INPUT,
//     OUTPUT (and FORWARD on nodes) and never touches any other rule or
//     chain. Changes are atomic: iptables-restore --noflush (declaring a
//     chain flushes only that chain, in the same transaction as its new
//     rules) and ipset restore.
//   - An allowed packet RETURNs to the base chain, so the CNI's and
//     kube-proxy's rules still decide after Palisade's; a denied one is
//     rejected. Established and related connections are let through first.
//   - IP changes are applied to sets member by member; rules are reloaded
//     only when the rules themselves change.
//   - Rules stay in the kernel when the agent stops or loses the server
//     (fail-closed). Disable removes Palisade's jumps, chains and sets, and
//     the filter table if Palisade made it, leaving iptables-save and
//     ipset list as they were.
//   - No open window for new pods: the node's chains refuse every packet
//     from or to an address of the node's pod ranges that is not in
//     PALISADE-READY, and a pod's address is added there only once its own
//     namespace is programmed (or the server says no enforced scope
//     decides it).
//   - Drift: each programmed namespace has a netlink socket subscribed to
//     nf_tables change notifications; any change makes the agent compare
//     its chains and sets with what it programmed and restore them,
//     recording a drift event. A periodic full check is the backstop (and
//     the only way set edits are seen: ipset sends no notifications).
package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/ruleset"
)

// Config configures an Enforcer.
type Config struct {
	Node string
	// NetNS is the node's namespace path ("" = the agent's own).
	NetNS string
	// Pods finds pod namespaces; required.
	Pods PodNamespaces
	// StateFile keeps the last bundle across agent restarts ("" = none).
	StateFile string
	// CheckInterval is the periodic full drift check, every member of
	// every set re-read (default 5 min: chain edits are caught at once by
	// notifications, set edits by SetCheckInterval; this is the backstop,
	// e.g. for a member replaced by another).
	CheckInterval time.Duration
	// SetCheckInterval is the quick check of the sets (ipset sends no
	// change notification): each set's existence and number of members,
	// one netlink request per namespace, ≈ 20 µs of CPU (default 5 s:
	// ≈ 0.2 % of a core for 500 namespaces).
	SetCheckInterval time.Duration
	// OnDrift, if set, is called for every drift event.
	OnDrift func(ruleset.DriftEvent)
	Logger  *slog.Logger
}

// NodeTarget is the Target of the node's own namespace in statuses.
const NodeTarget = "node"

// Enforcer keeps one node's namespaces programmed to its Bundle.
type Enforcer struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	bundle     *ruleset.Bundle
	programmed string // hash of the bundle fully programmed
	at         time.Time
	ns         map[string]*nsState // by target
	drift      []ruleset.DriftEvent
	errs       []string
	serverLost bool

	kick  chan struct{}
	dirty map[string]time.Time // targets to check, and when the change was noticed
}

type nsState struct {
	target     string
	path       string
	spec       *spec
	snap       *snapshot
	hash       string
	scope      string
	version    string
	ips        []string
	watch      *nftWatch
	conn       *nfConn // the namespace's netlink socket
	err        string
	pending    bool
	programmed time.Time
	// rulesKey identifies the chains last programmed (spec.rulesKey).
	rulesKey string
}

// New returns an enforcer; with a StateFile it resumes the bundle it
// programmed last (rules stayed in the kernel meanwhile).
func New(cfg Config) (*Enforcer, error) {
	if cfg.Pods == nil {
		return nil, errors.New("enforce: Config.Pods is required")
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 5 * time.Minute
	}
	if cfg.SetCheckInterval <= 0 {
		cfg.SetCheckInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Enforcer{cfg: cfg, log: cfg.Logger.With("node", cfg.Node), ns: map[string]*nsState{},
		kick: make(chan struct{}, 1), dirty: map[string]time.Time{}}
	if cfg.StateFile != "" {
		buf, err := os.ReadFile(cfg.StateFile)
		switch {
		case err == nil:
			var b ruleset.Bundle
			if err := json.Unmarshal(buf, &b); err != nil {
				return nil, fmt.Errorf("enforce: state %s: %w", cfg.StateFile, err)
			}
			e.bundle = &b
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("enforce: state: %w", err)
		}
	}
	return e, nil
}

// Bundle returns the bundle in force (nil: none).
func (e *Enforcer) Bundle() *ruleset.Bundle {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bundle
}

// Apply makes b the bundle in force and programs it. An empty bundle
// removes everything Palisade programmed on the node.
func (e *Enforcer) Apply(b *ruleset.Bundle) error {
	// Digests come from the sender; recompute them (canonicalizing the
	// members) so a wrong one can never make the agent skip a change.
	// Pods of a workload share their sets: members equal to those of a
	// set already hashed to the same digest are that digest, and valid if
	// those were.
	verified := map[string][]string{} // name, type, digest → canonical members
	key := func(s *ruleset.IPSet) string { return s.Name + "\x00" + string(s.Type) + "\x00" + s.Digest }
	for _, r := range b.AllRules() {
		for i := range r.Sets {
			s := &r.Sets[i]
			if m, ok := verified[key(s)]; ok && s.Digest != "" && slices.Equal(m, s.Members) {
				continue
			}
			s.ComputeDigest()
			k := key(s)
			if _, ok := verified[k]; !ok {
				verified[k] = s.Members
			}
		}
	}
	valid := map[string]bool{} // sets whose members were parsed
	known := func(s *ruleset.IPSet) bool {
		k := key(s)
		if valid[k] {
			return true
		}
		valid[k] = true // checked now; an error stops Apply
		return false
	}
	for _, p := range b.Pods {
		if p.Rules != nil {
			if err := p.Rules.ValidateSkipping(known); err != nil {
				return fmt.Errorf("bundle %s: pod %s: %w", b.Hash, p.ID, err)
			}
		}
	}
	if b.Self != nil {
		if err := b.Self.ValidateSkipping(known); err != nil {
			return fmt.Errorf("bundle %s: node: %w", b.Hash, err)
		}
	}
	e.mu.Lock()
	e.bundle = b
	e.mu.Unlock()
	if err := e.persist(b); err != nil {
		return err
	}
	return e.reconcile()
}

func (e *Enforcer) persist(b *ruleset.Bundle) error {
	if e.cfg.StateFile == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(e.cfg.StateFile), 0o700); err != nil {
		return err
	}
	buf, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tmp := e.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, e.cfg.StateFile)
}

// Disable removes Palisade's rules and sets from the node and every pod
// namespace it programmed, and forgets the bundle.
func (e *Enforcer) Disable() error {
	return e.Apply(&ruleset.Bundle{Node: e.cfg.Node})
}

// SetServerLost records whether the agent currently reaches the server.
func (e *Enforcer) SetServerLost(lost bool) {
	e.mu.Lock()
	e.serverLost = lost
	e.mu.Unlock()
}

// reconcile programs the bundle in force into every namespace.
func (e *Enforcer) reconcile() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reconcileLocked()
}

func (e *Enforcer) reconcileLocked() error {
	b := e.bundle
	if b == nil {
		return nil
	}
	var errs []error
	if b.Empty() {
		errs = e.unprogramAll(e.ns)
		// The node itself even if this agent never programmed it (e.g. a
		// restart without a state file).
		if _, ok := e.ns[NodeTarget]; !ok {
			if err := removeAt(e.cfg.NetNS); err != nil {
				errs = append(errs, fmt.Errorf("node: %w", err))
			}
		}
		e.ns = map[string]*nsState{}
		e.programmed, e.at = b.Hash, time.Now()
		e.recordErrs(errs)
		return errors.Join(errs...)
	}
	cidrs := parseCIDRs(b.PodCIDRs)
	// Addresses that pass the node's gate: exempt pods, the node's own
	// addresses in its pod ranges, and (below) programmed pods.
	ready := nodeAddrsIn(e.cfg.NetNS, cidrs)
	for i := range b.Pods {
		if b.Pods[i].Rules == nil {
			ready = append(ready, inCIDRs(b.Pods[i].IPs, cidrs)...)
		}
	}
	node := e.ns[NodeTarget]
	if node == nil {
		node = &nsState{target: NodeTarget, path: e.cfg.NetNS}
		e.ns[NodeTarget] = node
	}
	gateDone := make(chan error, 1)
	if node.snap == nil && len(cidrs) > 0 {
		// The gate, so that no pod of the bundle passes before its own
		// rules are in place: it is programmed while the pods are (no pod
		// is let through before the node's last programming below, after
		// both).
		node.spec = &spec{node: true, gate: b.PodCIDRs, ready: append([]string(nil), ready...)}
		go func() { gateDone <- e.programNS(node, false) }()
	} else {
		gateDone <- nil
	}
	wanted := map[string]bool{NodeTarget: true}
	type job struct {
		p  *ruleset.Pod
		st *nsState
	}
	var jobs []job
	for i := range b.Pods {
		p := &b.Pods[i]
		if p.Rules == nil {
			continue // exempt: its rules, if any, go with the unwanted below
		}
		wanted[p.ID] = true
		st := e.ns[p.ID]
		if st == nil {
			st = &nsState{target: p.ID}
			e.ns[p.ID] = st
		}
		jobs = append(jobs, job{p, st})
	}
	// Namespaces are independent: program them side by side (the work is
	// mostly iptables-restore and ipset processes).
	parallel(len(jobs), func(i int) { e.programPod(jobs[i].p, jobs[i].st) })
	if err := <-gateDone; err != nil {
		errs = append(errs, fmt.Errorf("node gate: %w", err))
	}
	for _, j := range jobs {
		if j.st.err != "" && !j.st.pending {
			errs = append(errs, fmt.Errorf("pod %s: %s", j.p.ID, j.st.err))
		}
		if j.st.snap != nil && !j.st.pending && j.st.err == "" {
			ready = append(ready, inCIDRs(j.p.IPs, cidrs)...)
		}
	}
	unwanted := map[string]*nsState{}
	for t, st := range e.ns {
		if !wanted[t] {
			unwanted[t] = st
			delete(e.ns, t)
		}
	}
	errs = append(errs, e.unprogramAll(unwanted)...)
	sort.Strings(ready)
	node.spec = &spec{rules: b.Self, node: true, gate: b.PodCIDRs, ready: ready}
	if b.Self != nil {
		node.hash, node.scope, node.version = b.Self.Hash(), b.Self.Scope, b.Self.Version
	} else {
		node.hash, node.scope, node.version = "", "", ""
	}
	if err := e.programNS(node, false); err != nil {
		errs = append(errs, fmt.Errorf("node: %w", err))
	}
	if pending := e.anyPending(); len(errs) == 0 && !pending {
		e.programmed, e.at = b.Hash, time.Now()
	} else if pending {
		// Wake Run to arm its retry timer.
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
	e.recordErrs(errs)
	return errors.Join(errs...)
}

func (e *Enforcer) recordErrs(errs []error) {
	e.errs = e.errs[:0]
	for _, err := range errs {
		e.errs = append(e.errs, err.Error())
	}
}

func (e *Enforcer) anyPending() bool {
	for _, st := range e.ns {
		if st.pending {
			return true
		}
	}
	return false
}

// unprogramAll removes Palisade's rules from the namespaces, side by side.
func (e *Enforcer) unprogramAll(m map[string]*nsState) []error {
	var sts []*nsState
	for _, st := range m {
		sts = append(sts, st)
	}
	errs := make([]error, len(sts))
	parallel(len(sts), func(i int) {
		if err := e.unprogram(sts[i]); err != nil && !errors.Is(err, errNoNamespace) {
			errs[i] = fmt.Errorf("%s: %w", sts[i].target, err)
		}
	})
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// parallel runs fn(0..n-1) on up to 8 goroutines.
func parallel(n int, fn func(int)) {
	const workers = 8
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// programPod programs one pod's namespace (if found) into st.
func (e *Enforcer) programPod(p *ruleset.Pod, st *nsState) {
	path, err := e.cfg.Pods.Find(*p)
	if err != nil {
		st.pending, st.err = errors.Is(err, errNoNamespace), err.Error()
		if st.pending {
			st.err = ""
		}
		return
	}
	if st.path != path {
		// A new namespace (or a new incarnation under the same name).
		st.watch.Close()
		st.conn.Close()
		st.watch, st.snap, st.conn = nil, nil, nil
		st.path = path
	}
	st.pending = false
	st.ips = p.IPs
	newHash := p.Rules.Hash()
	if st.snap != nil && st.hash == newHash {
		return // unchanged; drift is the watchers' business
	}
	st.spec = &spec{rules: p.Rules}
	st.hash, st.scope, st.version = newHash, p.Rules.Scope, p.Rules.Version
	if err := e.programNS(st, false); err != nil {
		st.err = err.Error()
		if inode(path) == 0 {
			// The namespace went away while it was being programmed (the
			// pod is being deleted): not an error, and nothing to keep.
			st.watch.Close()
			st.conn.Close()
			st.watch, st.snap, st.conn, st.path, st.err, st.pending = nil, nil, nil, "", "", true
		}
	}
}

// programNS programs st.spec into st.path and makes sure a watcher runs.
// The chains are rewritten when the spec's rules changed since the last
// programming, or when the kernel no longer holds what was programmed;
// otherwise only set members are brought up to date.
func (e *Enforcer) programNS(st *nsState, _ bool) error {
	if st.watch == nil {
		target := st.target
		w, err := watchNFT(st.path, func() { e.markDirty(target) })
		if err != nil {
			st.err = err.Error()
			return err
		}
		st.watch = w
	}
	if st.conn == nil {
		c, err := openNF(st.path)
		if err != nil {
			st.err = err.Error()
			return err
		}
		st.conn = c
	}
	key := st.spec.rulesKey()
	_, snap, err := program(st.conn, st.spec, key != st.rulesKey, st.snap)
	if err != nil {
		st.err = err.Error()
		return err
	}
	st.snap, st.err, st.programmed, st.rulesKey = snap, "", time.Now(), key
	return nil
}

func (e *Enforcer) unprogram(st *nsState) error {
	st.watch.Close()
	st.watch = nil
	defer func() { st.conn.Close(); st.conn = nil }()
	if st.path == "" && st.target != NodeTarget {
		return nil
	}
	if st.target != NodeTarget {
		if _, err := os.Stat(st.path); err != nil {
			return nil // the namespace is gone, and its rules with it
		}
	}
	if st.conn == nil {
		return removeAt(st.path)
	}
	return remove(st.conn)
}

// removeAt removes Palisade's rules and sets from the namespace at path.
func removeAt(path string) error {
	c, err := openNF(path)
	if err != nil {
		return err
	}
	defer c.Close()
	return remove(c)
}

func (e *Enforcer) markDirty(target string) {
	e.mu.Lock()
	if _, ok := e.dirty[target]; !ok {
		e.dirty[target] = time.Now()
	}
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run repairs drift and follows pod namespaces until ctx ends. Rules stay
// in force when it returns.
func (e *Enforcer) Run(ctx context.Context) error {
	if err := e.cfg.Pods.Watch(ctx, func() { e.markDirty("") }); err != nil {
		return err
	}
	if e.Bundle() != nil {
		if err := e.reconcile(); err != nil {
			e.log.Warn("enforce: resuming the last bundle", "err", err)
		}
	}
	full := time.NewTicker(e.cfg.CheckInterval)
	defer full.Stop()
	sets := time.NewTicker(e.cfg.SetCheckInterval)
	defer sets.Stop()
	// The retry of pending pods (a namespace not there yet) every 100 ms
	// runs only while one is pending: an armed timer, not a ticker, so an
	// idle agent is not woken ten times a second. Apply wakes the loop
	// (kick) when it leaves a pod pending, and the pod-namespace watcher's
	// periodic re-check wakes it too, as the backstop.
	var retryC <-chan time.Time
	armRetry := func() {
		if retryC != nil {
			return
		}
		e.mu.Lock()
		p := e.anyPending()
		e.mu.Unlock()
		if p {
			retryC = time.After(100 * time.Millisecond)
		}
	}
	defer e.closeWatches()
	for {
		armRetry()
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
		case <-full.C:
			e.markAll()
		case <-sets.C:
			e.checkAllSets()
			continue
		case <-retryC:
			retryC = nil
			e.markDirty("")
			continue
		}
		e.check()
	}
}

// markAll schedules the full check of every namespace (chains and sets).
func (e *Enforcer) markAll() {
	e.mu.Lock()
	for t := range e.ns {
		if _, ok := e.dirty[t]; !ok {
			e.dirty[t] = time.Time{}
		}
	}
	e.mu.Unlock()
}

func (e *Enforcer) closeWatches() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range e.ns {
		st.watch.Close()
		st.conn.Close()
		st.watch, st.conn = nil, nil
	}
}

// check re-verifies the dirty namespaces and repairs drift; "" (pod
// namespaces changed) re-reconciles pending pods.
func (e *Enforcer) check() {
	e.mu.Lock()
	defer e.mu.Unlock()
	dirty := e.dirty
	e.dirty = map[string]time.Time{}
	if _, ok := dirty[""]; ok && e.bundle != nil && !e.bundle.Empty() {
		if e.anyPending() {
			_ = e.reconcileLocked()
		}
		// A namespace that went away takes its rules with it; a new one
		// with a known pod's address is picked up by reconcile.
		for _, st := range e.ns {
			if st.target != NodeTarget && st.path != "" && inode(st.path) == 0 {
				st.watch.Close()
				st.conn.Close()
				st.watch, st.snap, st.conn, st.path, st.pending = nil, nil, nil, "", true
			}
		}
	}
	for t, since := range dirty {
		check := program // the periodic check: chains and sets
		if !since.IsZero() {
			check = checkChains // a notification: chains only
		}
		e.verify(t, since, check)
	}
}

// checkAllSets runs the quick set check in every programmed namespace.
func (e *Enforcer) checkAllSets() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for t := range e.ns {
		e.verify(t, time.Time{}, checkSets)
	}
}

// verify runs check on one namespace and records the drift it repaired.
func (e *Enforcer) verify(t string, since time.Time, check func(*nfConn, *spec, bool, *snapshot) (string, *snapshot, error)) {
	st := e.ns[t]
	if t == "" || st == nil || st.spec == nil || st.snap == nil || st.path == "" && t != NodeTarget {
		return
	}
	if st.conn == nil {
		c, err := openNF(st.path)
		if err != nil {
			st.err = err.Error()
			return
		}
		st.conn = c
	}
	what, snap, err := check(st.conn, st.spec, false, st.snap)
	if err != nil {
		st.err = err.Error()
		return
	}
	st.snap, st.err = snap, ""
	if what == "" {
		return
	}
	ev := ruleset.DriftEvent{Time: time.Now(), Target: t, What: what}
	if !since.IsZero() {
		ev.Repaired = time.Since(since)
	}
	e.drift = append(e.drift, ev)
	if len(e.drift) > 100 {
		e.drift = e.drift[len(e.drift)-100:]
	}
	e.log.Warn("enforce: drift repaired", "target", t, "what", what, "after", ev.Repaired)
	if e.cfg.OnDrift != nil {
		go e.cfg.OnDrift(ev)
	}
}

// Status reports what is programmed.
func (e *Enforcer) Status() ruleset.AgentStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ruleset.AgentStatus{Node: e.cfg.Node, Hash: e.programmed, Programmed: e.at, ServerLost: e.serverLost,
		Drift: append([]ruleset.DriftEvent(nil), e.drift...), Errors: append([]string(nil), e.errs...), Reported: time.Now(),
		Namespaces: []ruleset.NamespaceStatus{}}
	if e.bundle != nil {
		s.Versions = e.bundle.Versions
	}
	for _, st := range e.ns {
		ns := ruleset.NamespaceStatus{Target: st.target, NetNS: st.path, Scope: st.scope, Version: st.version,
			Hash: st.hash, Programmed: st.programmed, Pending: st.pending, Error: st.err}
		if st.snap != nil {
			ns.Rules, ns.Sets, ns.Members = st.snap.rules(), st.snap.sets, st.snap.members
		}
		s.Namespaces = append(s.Namespaces, ns)
	}
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Target < s.Namespaces[j].Target })
	return s
}

func parseCIDRs(xs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range xs {
		if p, err := netip.ParsePrefix(x); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func inCIDRs(ips []string, cidrs []netip.Prefix) []string {
	var out []string
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		for _, p := range cidrs {
			if p.Contains(a) {
				out = append(out, a.String())
				break
			}
		}
	}
	return out
}

// nodeAddrsIn lists the node namespace's own addresses inside cidrs (the
// bridge gateway, a tunnel address): the node's own traffic to its pods
// passes the gate.
func nodeAddrsIn(path string, cidrs []netip.Prefix) []string {
	if len(cidrs) == 0 {
		return nil
	}
	return inCIDRs(addrsIn(path), cidrs)
}
