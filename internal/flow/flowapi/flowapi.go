// Package flowapi serves the flow service (internal/flow) over HTTP: agent
// batches and heartbeats, agent configuration, flow search.
package flowapi

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Routes are the flow and agent endpoints, for the server's route table.
//
//	POST /api/v1/agents/{node}/flows       a flow.Batch as JSON (Content-Encoding: gzip optional)
//	POST /api/v1/agents/{node}/heartbeat   a flow.Heartbeat
//	GET  /api/v1/agents                    the agents' config and health (a scoped caller: its nodes')
//	GET  /api/v1/agents/{node}/config      a flow.AgentConfig
//	PUT  /api/v1/agents/{node}/config
//	GET  /api/v1/flows?filter=F&from=T&to=T&limit=N
//	GET  /api/v1/flows/top?by=FIELD&filter=F&from=T&to=T&n=N
//	GET  /api/v1/flows/metrics
//	GET  /api/v1/flows/{id}
//	GET  /api/v1/flows/follow?filter=F        newline-delimited JSON, as flows appear
//
// Times are RFC 3339, unix seconds, or a duration before now ("5m").
// Errors are pkg/api's shape: "position" for a bad filter, "field" (e.g.
// "observations[3].tuple.srcIP") for a malformed batch.
func Routes(svc *flow.Service) []httpapi.Route { return ScopedRoutes(svc, nil) }

// ScopedRoutes are Routes whose searches, reads and streams show each
// caller only the flows vis allows (per-scope RBAC; nil: all).
//
// limits, when given, bound each agent's batches: clock skew and rate
// (limits.go; zero fields take the defaults). The server always gives
// them; without, nothing is bounded (benchmarks, tests of the pipeline).
func ScopedRoutes(svc *flow.Service, vis VisibilityOf, limits ...Limits) []httpapi.Route {
	s := &handlers{svc: svc, opts: svc.Options(), vis: vis}
	if len(limits) > 0 {
		s.limits = limits[0].withDefaults()
		s.batches = newBatchLimiter(s.limits)
	}
	refused := func(status int) {
		switch status {
		case http.StatusUnauthorized, http.StatusForbidden:
			svc.CountRefused(flow.RefusedUnauthenticated)
		case http.StatusRequestEntityTooLarge:
			svc.CountRefused(flow.RefusedOversized)
		default:
			svc.CountRefused(flow.RefusedMalformed)
		}
	}
	return []httpapi.Route{
		{Method: "POST", Pattern: "/api/v1/agents/{node}/flows", Perm: auth.AgentReport, Handler: s.handleIngest, OnRefused: refused, MaxBody: s.opts.MaxBatchBytes},
		{Method: "POST", Pattern: "/api/v1/agents/{node}/heartbeat", Perm: auth.AgentReport, Handler: s.handleHeartbeat},
		{Method: "GET", Pattern: "/api/v1/agents", Perm: auth.AgentsRead, Scope: httpapi.Filtered, Handler: s.handleAgents},
		{Method: "GET", Pattern: "/api/v1/agents/{node}/config", Perm: auth.AgentsRead, Scope: httpapi.Filtered, Handler: s.handleConfig},
		{Method: "PUT", Pattern: "/api/v1/agents/{node}/config", Perm: auth.AgentsWrite, Scope: httpapi.Global, Handler: s.handleSetConfig,
			Before: func(r *http.Request) any { return svc.Agents.Config(r.PathValue("node")) }},
		{Method: "GET", Pattern: "/api/v1/flows", Perm: auth.FlowsRead, Scope: httpapi.Filtered, Handler: s.handleSearch},
		{Method: "GET", Pattern: "/api/v1/flows/top", Perm: auth.FlowsRead, Scope: httpapi.Filtered, Handler: s.handleTop},
		{Method: "GET", Pattern: "/api/v1/flows/metrics", Perm: auth.FlowsRead, Scope: httpapi.ServerWide, Handler: func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, s.svc.Metrics())
		}},
		{Method: "GET", Pattern: "/api/v1/flows/{id}", Perm: auth.FlowsRead, Scope: httpapi.Filtered, Handler: s.handleGet},
		{Method: "GET", Pattern: flow.FollowPath, Perm: auth.FlowsRead, Scope: httpapi.Filtered, Handler: s.handleFollow},
	}
}

func (s *handlers) handleIngest(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if wait, ok := s.batches.allow(node, s.opts.Now()); !ok { // limits.go
		httpapi.WriteError(w, s.batches.tooMany(w, node, wait))
		return
	}
	b, err := s.readBatch(w, r)
	if err == nil && b.Node != node {
		if b.Node == "" {
			b.Node = node
		} else {
			err = &flow.BatchError{Field: "node", Msg: "batch node " + strconv.Quote(b.Node) + " differs from the URL's " + strconv.Quote(node)}
		}
	}
	if err == nil {
		if e := s.limits.checkClock(&b, s.opts.Now()); e != nil {
			err = e
		}
	}
	if err != nil {
		e := batchAPIError(err)
		if e.Status == http.StatusRequestEntityTooLarge {
			s.svc.CountRefused(flow.RefusedOversized)
		} else {
			s.svc.CountRefused(flow.RefusedMalformed)
		}
		httpapi.WriteError(w, e)
		return
	}
	// Ingest counts the batches it refuses itself.
	if err := s.svc.Ingest(r.Context(), b); err != nil {
		if errors.As(err, new(*flow.BatchError)) {
			httpapi.WriteError(w, batchAPIError(err))
			return
		}
		httpapi.WriteError(w, api.Errorf(http.StatusServiceUnavailable, "%v", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, flow.IngestResponse{Accepted: len(b.Observations), Config: s.svc.Agents.Config(node)})
}

// batchAPIError gives a refused batch its status and the field at fault.
func batchAPIError(err error) *api.Error {
	var be *flow.BatchError
	if errors.As(err, &be) {
		return api.BadRequest(be.Path(), "%s", be.Error())
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	return api.BadRequest("", "batch: %v", err)
}

// readBatch decodes a request body within the size limits.
func (s *handlers) readBatch(w http.ResponseWriter, r *http.Request) (flow.Batch, error) {
	var b flow.Batch
	tooLarge := func(what string, n int64) error {
		return api.Errorf(http.StatusRequestEntityTooLarge, "%s larger than %d bytes", what, n)
	}
	if err := httpapi.RequireJSON(r); err != nil {
		return b, err
	}
	if r.ContentLength > s.opts.MaxBatchBytes {
		return b, tooLarge("batch", s.opts.MaxBatchBytes)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, s.opts.MaxBatchBytes)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(body)
		if err != nil {
			if isMaxBytes(err) {
				return b, tooLarge("batch", s.opts.MaxBatchBytes)
			}
			return b, api.BadRequest("", "batch: gzip: %v", err)
		}
		defer zr.Close()
		body = zr
	}
	lr := &limitReader{r: body, left: s.opts.MaxBatchDecoded}
	dec := json.NewDecoder(lr)
	if err := dec.Decode(&b); err != nil {
		switch {
		case lr.over:
			return b, tooLarge("decoded batch", s.opts.MaxBatchDecoded)
		case isMaxBytes(err):
			return b, tooLarge("batch", s.opts.MaxBatchBytes)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return b, api.BadRequest(te.Field, "batch: %v", err)
		}
		return b, api.BadRequest("", "batch: %v", err)
	}
	if dec.More() {
		return b, api.BadRequest("", "batch: trailing data after the batch")
	}
	return b, nil
}

func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.over = true
		return 0, errors.New("too large")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (s *handlers) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb flow.Heartbeat
	if err := httpapi.ReadJSON(w, r, &hb, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	node := r.PathValue("node")
	s.svc.Agents.Heartbeat(node, hb, s.opts.Now())
	httpapi.WriteJSON(w, http.StatusOK, s.svc.Agents.Config(node))
}

// handleAgents lists the agents of the nodes the caller may see.
func (s *handlers) handleAgents(w http.ResponseWriter, r *http.Request) {
	agents := s.svc.Agents.List()
	if vis := s.visibility(r); vis != nil && !vis.All() {
		agents = slices.DeleteFunc(agents, func(a flow.AgentStatus) bool { return !vis.Node(a.Node) })
	}
	httpapi.WriteJSON(w, http.StatusOK, api.AgentList{Agents: agents})
}

// handleConfig is a node's agent configuration; a node the caller may not
// see has none for it.
func (s *handlers) handleConfig(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if vis := s.visibility(r); vis != nil && !vis.All() && !vis.Node(node) {
		httpapi.WriteError(w, api.NotFound("no agent of node %q among the nodes your scope runs on", node))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s.svc.Agents.Config(node))
}

func (s *handlers) handleSetConfig(w http.ResponseWriter, r *http.Request) {
	var c flow.AgentConfig
	if err := httpapi.ReadJSON(w, r, &c, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if err := s.svc.Agents.SetConfig(r.PathValue("node"), c); err != nil {
		httpapi.WriteError(w, api.BadRequest("mode", "%v", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
}

// timeRange reads from/to (default: the last hour).
func (s *handlers) timeRange(r *http.Request) (from, to time.Time, err error) {
	now := s.opts.Now()
	if to, err = flow.ParseTime(r.URL.Query().Get("to"), now, now); err != nil {
		return to, to, api.BadRequest("to", "to: %v", err)
	}
	if from, err = flow.ParseTime(r.URL.Query().Get("from"), to.Add(-time.Hour), now); err != nil {
		return from, to, api.BadRequest("from", "from: %v", err)
	}
	return from, to, nil
}

// SearchTimeout bounds a flow search or top on the server's side; the
// client going away stops it earlier.
const SearchTimeout = 30 * time.Second

func (s *handlers) handleSearch(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	limit, err := httpapi.QueryInt(r, "limit", 0, 0, s.opts.MaxSearchLimit)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), SearchTimeout)
	defer cancel()
	flows, err := s.search(ctx, s.visibility(r), r.URL.Query().Get("filter"), from, to, limit)
	if err != nil {
		httpapi.WriteError(w, httpapi.Stopped(err, SearchTimeout))
		return
	}
	if flows == nil {
		flows = []flow.Flow{}
	}
	httpapi.WriteJSON(w, http.StatusOK, api.FlowList{Flows: flows})
}

// search returns the flows of a search the caller may see, newest first,
// at most limit. For a caller who sees everything it is one store search;
// otherwise the range is read in growing pages, newest first, keeping the
// visible flows until limit of them are found or the range is exhausted.
func (s *handlers) search(ctx context.Context, vis Visibility, filter string, from, to time.Time, limit int) ([]flow.Flow, error) {
	if vis == nil || vis.All() {
		return s.svc.SearchContext(ctx, filter, from, to, limit)
	}
	if limit <= 0 {
		limit = 100
	}
	// The first page asks for twice the limit (a scope typically sees a
	// good share of what it searches); each further page four times more.
	page := min(2*limit, s.opts.MaxSearchLimit)
	var out []flow.Flow
	seen := map[string]bool{}
	for {
		batch, err := s.svc.SearchContext(ctx, filter, from, to, page)
		if err != nil {
			return nil, err
		}
		fresh := false
		oldest := to
		for i := range batch {
			f := &batch[i]
			if f.Start.Before(oldest) {
				oldest = f.Start
			}
			if seen[f.ID] {
				continue
			}
			seen[f.ID], fresh = true, true
			if i%256 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if vis.Flow(f) {
				out = append(out, *f)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if len(batch) < page {
			return out, nil
		}
		switch {
		case fresh && oldest.Before(to):
			// The next page ends where this one's oldest flow starts (the
			// flows starting then come again, and are skipped as seen).
			to = oldest
		case page < s.opts.MaxSearchLimit:
			// Flows starting at one instant filled the page: a larger
			// page reaches past them.
		default:
			// More than MaxSearchLimit flows start at one instant: step
			// past it (the rest of that instant is not searched).
			if oldest.Before(to) {
				to = oldest
			}
			to = to.Add(-time.Nanosecond)
		}
		if to.Before(from) {
			return out, nil
		}
		page = min(4*page, s.opts.MaxSearchLimit)
	}
}

// visibility is r's caller's visibility (nil: everything).
func (s *handlers) visibility(r *http.Request) Visibility {
	if s.vis == nil {
		return nil
	}
	return s.vis(r)
}

func (s *handlers) handleTop(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	by := r.URL.Query().Get("by")
	if !flow.ValidTopBy(by) {
		httpapi.WriteError(w, api.BadRequest("by", `by %q: want "pair" or an endpoint field such as src.namespace, dst.port, dst.service, proto`, by))
		return
	}
	n, err := httpapi.QueryInt(r, "n", 0, 0, maxTop)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), SearchTimeout)
	defer cancel()
	filter := r.URL.Query().Get("filter")
	var entries []flow.TopEntry
	if vis := s.visibility(r); vis == nil || vis.All() {
		entries, err = s.svc.TopContext(ctx, filter, by, from, to, n)
	} else {
		entries, err = s.topVisible(ctx, vis, filter, by, from, to, n)
	}
	if err != nil {
		httpapi.WriteError(w, httpapi.Stopped(err, SearchTimeout))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, api.TopList{By: by, Entries: entries})
}

// topVisible is Top over the flows a restricted caller may see: the store
// aggregates before anyone could tell which flows those are, so the
// visible flows (up to the search limit) are grouped here.
func (s *handlers) topVisible(ctx context.Context, vis Visibility, filter, by string, from, to time.Time, n int) ([]flow.TopEntry, error) {
	flows, err := s.search(ctx, vis, filter, from, to, s.opts.MaxSearchLimit)
	if err != nil {
		return nil, err
	}
	groups := map[string]*flow.TopEntry{}
	for i := range flows {
		f := &flows[i]
		k := flow.TopKey(f, by)
		g := groups[k]
		if g == nil {
			g = &flow.TopEntry{Key: k}
			groups[k] = g
		}
		g.Flows++
		g.Conns += f.Conns
		g.Bytes += f.FwdBytes + f.RevBytes
	}
	out := make([]flow.TopEntry, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	if n <= 0 {
		n = 10
	}
	return flow.RankTop(out, n), nil
}

func (s *handlers) handleGet(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Get(r.PathValue("id"))
	vis := s.visibility(r)
	if err == nil && vis != nil && !vis.All() {
		// A flow the caller may not see does not exist for it.
		if !vis.Flow(&d.Flow) {
			err = flow.ErrNotFound
		} else {
			kept := d.RelatedFlows[:0]
			for i := range d.RelatedFlows {
				if vis.Flow(&d.RelatedFlows[i]) {
					kept = append(kept, d.RelatedFlows[i])
				}
			}
			d.RelatedFlows = kept
		}
	}
	switch {
	case errors.Is(err, flow.ErrNotFound):
		httpapi.WriteError(w, api.NotFound("flow %q not found", r.PathValue("id")))
	case err != nil:
		httpapi.WriteError(w, api.BadRequest("id", "%v", err))
	default:
		httpapi.WriteJSON(w, http.StatusOK, d)
	}
}

// maxTop caps n= of GET /api/v1/flows/top.
const maxTop = 1000

type handlers struct {
	svc     *flow.Service
	opts    flow.Options
	vis     VisibilityOf
	limits  Limits
	batches *batchLimiter
}

// Visibility decides which flows a caller may see (per-scope RBAC: a flow
// is visible when either end was in a scope the caller may see at the
// flow's time). The server builds one per request.
type Visibility interface {
	// All reports that nothing is hidden (the searches then run unfiltered).
	All() bool
	Flow(f *flow.Flow) bool
	// Node reports whether the caller may see the agent of a node (one
	// that runs a workload of the caller's scope).
	Node(name string) bool
}

// VisibilityOf returns the visibility of a request's caller (nil: all).
type VisibilityOf func(*http.Request) Visibility

// handleFollow streams the flows matching ?filter= as they appear
// (newline-delimited JSON, one flow per line; an empty line every 10 s
// keeps idle connections alive), until the client goes away. A bad filter
// is answered like a search's, with its position.
func (s *handlers) handleFollow(w http.ResponseWriter, r *http.Request) {
	f, err := s.svc.Follow(r.URL.Query().Get("filter"))
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	defer s.svc.Unfollow(f)
	vis := s.visibility(r)
	if vis != nil && vis.All() {
		vis = nil
	}
	fl, _ := w.(http.Flusher)
	// The server's write timeout bounds ordinary answers; a stream
	// extends its deadline before every write instead.
	rc := http.NewResponseController(w)
	extend := func() { _ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second)) }
	extend()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case x := <-f.C:
			extend()
			if (vis == nil || vis.Flow(&x)) && enc.Encode(&x) != nil {
				return
			}
			// Whatever else is waiting goes in the same write.
			for more := true; more; {
				select {
				case x := <-f.C:
					if (vis == nil || vis.Flow(&x)) && enc.Encode(&x) != nil {
						return
					}
				default:
					more = false
				}
			}
		case <-tick.C:
			extend()
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
		}
		if fl != nil {
			fl.Flush()
		}
	}
}
