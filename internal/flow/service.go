package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// Window: see Pipeline.Window. Default 30 s (conversation summaries
	// come every 15 s from each node, at unaligned times).
	Window time.Duration
	// FlushEvery is how often closed windows are stored. Default 1 s.
	FlushEvery time.Duration
	// MaxBatchBytes caps a batch's compressed body, MaxBatchDecoded its
	// decoded JSON. Defaults 16 MiB and 128 MiB.
	MaxBatchBytes   int64
	MaxBatchDecoded int64
	// MaxSearchLimit caps Search's limit. Default 10,000.
	MaxSearchLimit int
	Logger         *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// OnFlows, when set, is called with every batch of flows once it is
	// stored (live policy analysis, compliance), and with the workload
	// versions the enrichment resolved their ends to (ends[i] for
	// flows[i]), so the hook need not resolve them again. It runs on the
	// flush path: it must not block, and must not keep or change the flows.
	OnFlows func(flows []Flow, ends []Ends)
}

// Service is the server side of flow visibility: it ingests agent
// batches, turns them into flows and answers searches.
type Service struct {
	store Store
	opts  Options
	log   *slog.Logger

	mu    sync.Mutex // guards pipe, seen, retry
	pipe  *Pipeline
	seen  Seqs // records logged since start (Store.Done covers older ones)
	retry []Emitted

	flushMu sync.Mutex // one flush at a time, in order

	Agents *Agents
	m      metrics

	// live: provisional flows and followers (live.go).
	live liveState
}

type metrics struct {
	batches, observations, duplicates, nats atomic.Uint64
	flowsStored, storeErrors, flowsUpdated  atomic.Uint64
	refusedMalformed, refusedOversized      atomic.Uint64
	refusedUnauthenticated                  atomic.Uint64
	searches, searchErrors                  atomic.Uint64
}

// NewService returns a service over store, enriching through r (nil: no
// enrichment). It takes up the observations the store logged but had not
// turned into flows before a restart.
func NewService(store Store, r Resolver, opts Options) (*Service, error) {
	if opts.Window <= 0 {
		opts.Window = 30 * time.Second
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = time.Second
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 16 << 20
	}
	if opts.MaxBatchDecoded <= 0 {
		opts.MaxBatchDecoded = 128 << 20
	}
	if opts.MaxSearchLimit <= 0 {
		opts.MaxSearchLimit = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{store: store, opts: opts, log: opts.Logger, pipe: NewPipeline(opts.Window, r), seen: Seqs{}, Agents: NewAgents()}
	pending, err := store.Pending()
	if err != nil {
		return nil, fmt.Errorf("flow service: reading the log: %w", err)
	}
	now := opts.Now()
	for i := range pending {
		s.take(&pending[i], now)
	}
	s.publish(nil)
	return s, nil
}

// take feeds a logged batch to the pipeline. Caller holds mu (or owns s).
func (s *Service) take(b *Batch, now time.Time) {
	for _, n := range b.NAT {
		s.pipe.AddNAT(n, now)
	}
	for i := range b.Observations {
		o := &b.Observations[i]
		s.seen.Add(o.Agent, o.Seq)
		s.pipe.Add(o, now)
	}
}

// Ingest validates a batch, logs its new records durably and returns; the
// records become flows when their window closes. Records already received
// (same Agent, Seq) are skipped, so resending a batch is harmless. A
// malformed batch is refused whole with a *BatchError.
func (s *Service) Ingest(ctx context.Context, b Batch) error {
	if err := b.Validate(); err != nil {
		s.m.refusedMalformed.Add(1)
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := b
	fresh.Observations = make([]Observation, 0, len(b.Observations))
	var inBatch Seqs
	for _, o := range b.Observations {
		if s.seen.Has(o.Agent, o.Seq) || s.store.Done(o.Agent, o.Seq) || inBatch.Has(o.Agent, o.Seq) {
			s.m.duplicates.Add(1)
			continue
		}
		if inBatch == nil {
			inBatch = Seqs{}
		}
		inBatch.Add(o.Agent, o.Seq)
		fresh.Observations = append(fresh.Observations, o)
	}
	if len(fresh.Observations) > 0 || len(fresh.NAT) > 0 {
		if err := s.store.Log(&fresh); err != nil {
			s.m.storeErrors.Add(1)
			return fmt.Errorf("flow service: %w", err)
		}
	}
	s.take(&fresh, s.opts.Now())
	s.m.batches.Add(1)
	s.m.observations.Add(uint64(len(fresh.Observations)))
	s.m.nats.Add(uint64(len(fresh.NAT)))
	s.Agents.seen(b.Node, b.Agent, s.opts.Now())
	return nil
}

// Flush stores the flows whose window has closed (all pending flows when
// all is set, e.g. in tests or before a planned shutdown).
func (s *Service) Flush(all bool) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	em := s.pipe.Flush(s.opts.Now(), all)
	todo := append(s.retry, em)
	s.retry = nil
	// Searchable now, stored or not: pending and emitted flows.
	s.publish(todo)
	s.mu.Unlock()
	for i := range todo {
		e := &todo[i]
		err := error(nil)
		if len(e.Flows) > 0 || len(e.Obs) > 0 || len(e.Updates) > 0 {
			// New flows and the late links of stored ones: one write.
			if err = s.store.AppendReplace(e.Flows, e.Updates, e.Obs); err == nil {
				s.m.flowsStored.Add(uint64(len(e.Flows)))
				s.m.flowsUpdated.Add(uint64(len(e.Updates)))
				if s.opts.OnFlows != nil && len(e.Flows) > 0 {
					s.opts.OnFlows(e.Flows, e.Ends)
				}
				e.Flows, e.Ends, e.Obs, e.Updates = nil, nil, nil, nil
			}
		}
		if err != nil {
			s.m.storeErrors.Add(1)
			s.mu.Lock()
			s.retry = append(todo[i:], s.retry...)
			s.mu.Unlock()
			return fmt.Errorf("flow service: storing flows: %w", err)
		}
	}
	if len(em.Flows) > 0 || len(todo) > 1 {
		s.mu.Lock()
		s.publish(s.retry)
		s.mu.Unlock()
	}
	return nil
}

// Run stores closed windows every FlushEvery until ctx ends. Pending
// observations stay in the store's log and are taken up on restart.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	// Retention also runs when nothing is stored (a store applies it on
	// writes too).
	ret := time.NewTicker(time.Minute)
	defer ret.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Flush(false); err != nil {
				s.log.Error("flow service", "err", err)
			}
		case now := <-ret.C:
			if r, ok := s.store.(interface{ Retain(time.Time) }); ok {
				r.Retain(now)
			}
		}
	}
}

// Search returns the flows overlapping [from, to] that match filter,
// newest first, at most limit (the default 100 when 0). A bad filter is a
// *filter.Error with the position of the offending token.
func (s *Service) Search(filter string, from, to time.Time, limit int) ([]Flow, error) {
	return s.SearchContext(context.Background(), filter, from, to, limit)
}

// SearchContext is Search stopped with ctx's error once ctx is done.
func (s *Service) SearchContext(ctx context.Context, filter string, from, to time.Time, limit int) ([]Flow, error) {
	s.m.searches.Add(1)
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, s.opts.MaxSearchLimit)
	q, err := NewQuery(filter, from.UnixNano(), to.UnixNano(), limit)
	if err != nil {
		s.m.searchErrors.Add(1)
		return nil, err
	}
	q.Context = ctx
	stored, err := s.store.Search(q)
	if err != nil {
		return nil, err
	}
	return s.mergeLive(&q, stored), nil
}

// Detail is a flow with its related flows.
type Detail struct {
	Flow
	RelatedFlows []Flow `json:"relatedFlows,omitempty"`
}

// ErrNotFound is returned by Get for an unknown flow.
var ErrNotFound = errors.New("flow not found")

// Get returns a flow, with its observation points, and its related flows.
func (s *Service) Get(id string) (*Detail, error) {
	f, ok, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	d := &Detail{Flow: f}
	for _, r := range f.Related {
		if rf, ok, err := s.get(r.ID); err == nil && ok {
			d.RelatedFlows = append(d.RelatedFlows, rf)
		}
	}
	return d, nil
}

// get finds a flow, stored or provisional.
func (s *Service) get(id string) (Flow, bool, error) {
	f, ok, err := s.store.Get(id)
	if err != nil || ok {
		return f, ok, err
	}
	f, ok = s.liveGet(id)
	return f, ok, nil
}

// Top returns the n largest groups of flows in [from, to] by a field
// (src.namespace, dst.port, dst.service, ... or "pair").
func (s *Service) Top(by string, from, to time.Time, n int) ([]TopEntry, error) {
	return s.TopWhere("", by, from, to, n)
}

// TopWhere is Top over the flows matching filter.
func (s *Service) TopWhere(filter, by string, from, to time.Time, n int) ([]TopEntry, error) {
	return s.TopContext(context.Background(), filter, by, from, to, n)
}

// TopContext is TopWhere stopped with ctx's error once ctx is done.
func (s *Service) TopContext(ctx context.Context, filter, by string, from, to time.Time, n int) ([]TopEntry, error) {
	if !ValidTopBy(by) {
		return nil, fmt.Errorf("cannot group flows by %q: use \"pair\" or an endpoint field such as src.namespace, dst.port, dst.service, proto", by)
	}
	q, err := NewQuery(filter, from.UnixNano(), to.UnixNano(), 0)
	if err != nil {
		return nil, err
	}
	q.Context = ctx
	if n <= 0 {
		n = 10
	}
	return s.topLive(q, by, n)
}

// Metrics are the service's counters.
type Metrics struct {
	Batches                uint64 `json:"batches"`
	Observations           uint64 `json:"observations"`
	Duplicates             uint64 `json:"duplicates"`
	NATMappings            uint64 `json:"natMappings"`
	FlowsStored            uint64 `json:"flowsStored"`
	FlowsUpdated           uint64 `json:"flowsUpdated"`
	PendingFlows           int    `json:"pendingFlows"`
	StoreErrors            uint64 `json:"storeErrors"`
	RefusedMalformed       uint64 `json:"refusedMalformed"`
	RefusedOversized       uint64 `json:"refusedOversized"`
	RefusedUnauthenticated uint64 `json:"refusedUnauthenticated"`
	Searches               uint64 `json:"searches"`
	SearchErrors           uint64 `json:"searchErrors"`
}

// Metrics returns the current counters.
func (s *Service) Metrics() Metrics {
	s.mu.Lock()
	pending := s.pipe.Pending()
	s.mu.Unlock()
	return Metrics{
		Batches: s.m.batches.Load(), Observations: s.m.observations.Load(), Duplicates: s.m.duplicates.Load(),
		NATMappings: s.m.nats.Load(), FlowsStored: s.m.flowsStored.Load(), FlowsUpdated: s.m.flowsUpdated.Load(), PendingFlows: pending,
		StoreErrors: s.m.storeErrors.Load(), RefusedMalformed: s.m.refusedMalformed.Load(),
		RefusedOversized: s.m.refusedOversized.Load(), RefusedUnauthenticated: s.m.refusedUnauthenticated.Load(),
		Searches: s.m.searches.Load(), SearchErrors: s.m.searchErrors.Load(),
	}
}

// WriteMetrics writes the counters in the Prometheus text format.
func (s *Service) WriteMetrics(w io.Writer) {
	m := s.Metrics()
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"palisade_flow_batches_total", m.Batches},
		{"palisade_flow_observations_total", m.Observations},
		{"palisade_flow_duplicate_observations_total", m.Duplicates},
		{"palisade_flow_nat_mappings_total", m.NATMappings},
		{"palisade_flow_flows_stored_total", m.FlowsStored},
		{"palisade_flow_flows_updated_total", m.FlowsUpdated},
		{"palisade_flow_pending_flows", uint64(m.PendingFlows)},
		{"palisade_flow_store_errors_total", m.StoreErrors},
		{`palisade_flow_batches_refused_total{reason="malformed"}`, m.RefusedMalformed},
		{`palisade_flow_batches_refused_total{reason="oversized"}`, m.RefusedOversized},
		{`palisade_flow_batches_refused_total{reason="unauthenticated"}`, m.RefusedUnauthenticated},
		{"palisade_flow_searches_total", m.Searches},
		{"palisade_flow_search_errors_total", m.SearchErrors},
	} {
		fmt.Fprintf(w, "%s %d\n", c.name, c.v)
	}
}
