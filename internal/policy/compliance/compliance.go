// Package compliance monitors live traffic against each scope's enforced
// policy version: flows the enforced version denies but that were answered
// (Escaped) and flows it allows that were not (Misdropped) raise alerts.
// Alerts aggregate per scope, rule, verdict and edge (consumer → provider
// and port) with a count, can be acknowledged, and persist in the
// control-plane store.
package compliance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/store"
)

const bucketAlerts = "policy.alerts"

// Alert is one aggregated compliance problem.
type Alert struct {
	ID      string         `json:"id"`
	Scope   string         `json:"scope"`
	Version string         `json:"version"`
	Rule    policy.RuleRef `json:"rule"`
	Verdict policy.Verdict `json:"verdict"`
	// Edge is "CONSUMER → PROVIDER PROTO/PORT", ends named by workload
	// (pods by their owner) or address.
	Edge       string     `json:"edge"`
	Count      int        `json:"count"`
	First      time.Time  `json:"first"`
	Last       time.Time  `json:"last"`
	SampleFlow string     `json:"sampleFlow"`
	Acked      bool       `json:"acked"`
	AckedBy    string     `json:"ackedBy,omitempty"`
	AckedAt    *time.Time `json:"ackedAt,omitempty"`
}

// Monitor analyzes emitted flows against the enforced versions.
type Monitor struct {
	kv  store.KV
	r   analyze.Resolver
	log *slog.Logger

	mu     sync.Mutex
	an     *analyze.Analyzer
	alerts map[string]*Alert
	live   *analyze.Tally
}

// Open loads the persisted alerts.
func Open(kv store.KV, r analyze.Resolver, log *slog.Logger) (*Monitor, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Monitor{kv: kv, r: r, log: log, alerts: map[string]*Alert{}}
	err := kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketAlerts, "", func(_ string, v []byte) error {
			var a Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return nil // one damaged alert must not cost the others
			}
			m.alerts[a.ID] = &a
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: load: %w", err)
	}
	return m, nil
}

// SetPolicy replaces the policy watched: set holds the scope tree and, for
// the scopes that have one, their enforced version. Only sides decided by
// an enforced version raise alerts.
func (m *Monitor) SetPolicy(set policy.Set) error {
	ev, err := policy.Compile(set)
	if err != nil {
		return err
	}
	versions := map[string]string{}
	for s, v := range set.Versions {
		versions[s] = v.Name
	}
	m.mu.Lock()
	m.an = analyze.New(ev, m.r, "")
	m.live = analyze.NewTally("", versions, time.Now().UTC(), time.Time{}, nil)
	m.mu.Unlock()
	return nil
}

// Observe analyzes emitted flows (the flow service's OnFlows hook) and
// raises or updates alerts. ends are the workload versions the flow
// pipeline resolved the flows' ends to (ends[i] for flows[i]); without
// them (nil) the monitor resolves the ends itself.
func (m *Monitor) Observe(flows []flow.Flow, ends []flow.Ends) {
	m.mu.Lock()
	if m.an == nil {
		m.mu.Unlock()
		return
	}
	changed := map[string]*Alert{}
	for i := range flows {
		var fv analyze.FlowVerdict
		if len(ends) == len(flows) {
			fv, _ = m.an.AnalyzeResolved(&flows[i], ends[i])
		} else {
			fv, _ = m.an.Analyze(&flows[i])
		}
		m.live.Add(&fv)
		if fv.Translated || (fv.Verdict != policy.Escaped && fv.Verdict != policy.Misdropped) {
			continue
		}
		side := fv.Decision.Deciding()
		if side.Rule.Version == "" {
			continue // decided by a scope without an enforced version
		}
		f := &flows[i]
		edge := endpointName(f.Src) + " → " + endpointName(f.Dst) + " " + f.Proto + "/" + strconv.Itoa(int(f.Dst.Port))
		id := alertID(side.Rule, fv.Verdict, edge)
		al := m.alerts[id]
		if al == nil {
			al = &Alert{ID: id, Scope: side.Scope, Version: side.Rule.Version, Rule: side.Rule, Verdict: fv.Verdict,
				Edge: edge, First: f.Start.UTC()}
			m.alerts[id] = al
		}
		al.Count++
		if f.Start.After(al.Last) {
			al.Last = f.Start.UTC()
			al.SampleFlow = f.ID
		}
		if al.Acked && al.AckedAt != nil && f.Start.After(*al.AckedAt) {
			al.Acked, al.AckedBy, al.AckedAt = false, "", nil // it happened again
		}
		changed[id] = al
	}
	snap := make([]Alert, 0, len(changed))
	for _, al := range changed {
		snap = append(snap, *al)
	}
	m.mu.Unlock()
	if len(snap) > 0 {
		if err := m.save(snap); err != nil {
			m.log.Error("compliance: saving alerts", "err", err)
		}
	}
}

func (m *Monitor) save(as []Alert) error {
	return m.kv.Update(func(tx store.Tx) error {
		for i := range as {
			b, err := json.Marshal(&as[i])
			if err != nil {
				return err
			}
			if err := tx.Put(bucketAlerts, as[i].ID, b); err != nil {
				return err
			}
		}
		return nil
	})
}

func alertID(r policy.RuleRef, v policy.Verdict, edge string) string {
	h := sha256.Sum256([]byte(r.Scope + "\x00" + r.Version + "\x00" + strconv.Itoa(r.Index) + "\x00" + v.String() + "\x00" + edge))
	return hex.EncodeToString(h[:8])
}

// endpointName names a flow end for aggregation: a pod by its owner, a
// workload by namespace/name, else the address.
func endpointName(e flow.Endpoint) string {
	switch {
	case e.Kind == string(inventory.KindPod) && e.Owner != nil:
		return e.Namespace + "/" + e.Owner.Name
	case e.Name != "" && e.Namespace != "":
		return e.Namespace + "/" + e.Name
	case e.Name != "":
		return e.Kind + "/" + e.Name
	}
	return e.IP
}

// Alerts returns the alerts, newest activity first; acknowledged ones only
// with all.
func (m *Monitor) Alerts(all bool) []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Alert, 0, len(m.alerts))
	for _, a := range m.alerts {
		if all || !a.Acked {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Last.Equal(out[j].Last) {
			return out[i].Last.After(out[j].Last)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ErrNoAlert is returned by Ack for an unknown alert.
var ErrNoAlert = fmt.Errorf("no such alert")

// Ack acknowledges an alert; it reopens if the problem happens again.
func (m *Monitor) Ack(id, who string) (Alert, error) {
	m.mu.Lock()
	al := m.alerts[id]
	if al == nil {
		m.mu.Unlock()
		return Alert{}, ErrNoAlert
	}
	now := time.Now().UTC()
	al.Acked, al.AckedBy, al.AckedAt = true, who, &now
	snap := *al
	m.mu.Unlock()
	return snap, m.save([]Alert{snap})
}

// Live returns the counts of every flow analyzed since the policy was last
// set.
func (m *Monitor) Live() *analyze.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live == nil {
		return nil
	}
	r := m.live.Report()
	r.To = time.Now().UTC()
	return r
}
