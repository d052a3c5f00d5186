package flow

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
)

// Routes registers the flow and agent endpoints on mux. auth decides
// whether a request may proceed (nil: every request may); refused ones get
// 401.
//
//	POST /api/v1/agents/{node}/flows       a flow.Batch as JSON (Content-Encoding: gzip optional)
//	POST /api/v1/agents/{node}/heartbeat   a flow.Heartbeat
//	GET  /api/v1/agents                    every agent's config and health
//	GET  /api/v1/agents/{node}/config      a flow.AgentConfig
//	PUT  /api/v1/agents/{node}/config
//	GET  /api/v1/flows?filter=F&from=T&to=T&limit=N
//	GET  /api/v1/flows/top?by=FIELD&filter=F&from=T&to=T&n=N
//	GET  /api/v1/flows/metrics
//	GET  /api/v1/flows/{id}
//
// Times are RFC 3339, unix seconds, or a duration before now ("5m").
// Errors are {"error": "...", ...}: "position" for a bad filter, "record",
// "index" and "field" for a malformed batch.
func (s *Service) Routes(mux *http.ServeMux, auth func(*http.Request) bool) {
	guard := func(h http.HandlerFunc, countRefusal bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if auth != nil && !auth(r) {
				if countRefusal {
					s.m.refusedUnauthenticated.Add(1)
				}
				writeError(w, http.StatusUnauthorized, map[string]any{"error": "unauthenticated"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /api/v1/agents/{node}/flows", guard(s.handleIngest, true))
	mux.HandleFunc("POST /api/v1/agents/{node}/heartbeat", guard(s.handleHeartbeat, false))
	mux.HandleFunc("GET /api/v1/agents", guard(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"agents": s.Agents.List()})
	}, false))
	mux.HandleFunc("GET /api/v1/agents/{node}/config", guard(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Agents.Config(r.PathValue("node")))
	}, false))
	mux.HandleFunc("PUT /api/v1/agents/{node}/config", guard(s.handleSetConfig, false))
	mux.HandleFunc("GET /api/v1/flows", guard(s.handleSearch, false))
	mux.HandleFunc("GET /api/v1/flows/top", guard(s.handleTop, false))
	mux.HandleFunc("GET /api/v1/flows/metrics", guard(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Metrics())
	}, false))
	mux.HandleFunc("GET /api/v1/flows/{id}", guard(s.handleGet, false))
}

// IngestResponse answers an accepted batch; it carries the node's
// configuration so a mode change reaches the agent with its next batch.
type IngestResponse struct {
	Accepted int         `json:"accepted"`
	Config   AgentConfig `json:"config"`
}

func (s *Service) handleIngest(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	b, status, err := s.readBatch(w, r)
	if err == nil && b.Node != node {
		if b.Node == "" {
			b.Node = node
		} else {
			status, err = http.StatusBadRequest, &BatchError{Field: "node", Msg: "batch node " + strconv.Quote(b.Node) + " differs from the URL's " + strconv.Quote(node)}
		}
	}
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			s.m.refusedOversized.Add(1)
		} else {
			s.m.refusedMalformed.Add(1)
		}
		writeBatchError(w, status, err)
		return
	}
	if err := s.Ingest(r.Context(), b); err != nil {
		var be *BatchError
		if errors.As(err, &be) {
			writeBatchError(w, http.StatusBadRequest, err)
			return
		}
		writeError(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, IngestResponse{Accepted: len(b.Observations), Config: s.Agents.Config(node)})
}

// readBatch decodes a request body within the size limits.
func (s *Service) readBatch(w http.ResponseWriter, r *http.Request) (Batch, int, error) {
	var b Batch
	if r.ContentLength > s.opts.MaxBatchBytes {
		return b, http.StatusRequestEntityTooLarge, errors.New("batch larger than " + strconv.FormatInt(s.opts.MaxBatchBytes, 10) + " bytes")
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, s.opts.MaxBatchBytes)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return b, statusOf(err), err
		}
		defer zr.Close()
		body = zr
	}
	lr := &limitReader{r: body, left: s.opts.MaxBatchDecoded}
	dec := json.NewDecoder(lr)
	if err := dec.Decode(&b); err != nil {
		if lr.over {
			return b, http.StatusRequestEntityTooLarge, errors.New("decoded batch larger than " + strconv.FormatInt(s.opts.MaxBatchDecoded, 10) + " bytes")
		}
		return b, statusOf(err), err
	}
	if dec.More() {
		return b, http.StatusBadRequest, errors.New("trailing data after the batch")
	}
	return b, 0, nil
}

func statusOf(err error) int {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
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

func writeBatchError(w http.ResponseWriter, status int, err error) {
	body := map[string]any{"error": err.Error()}
	var be *BatchError
	if errors.As(err, &be) {
		body["record"], body["index"], body["field"] = be.Record, be.Index, be.Field
	}
	writeError(w, status, body)
}

func (s *Service) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb Heartbeat
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&hb); err != nil {
		writeError(w, http.StatusBadRequest, map[string]any{"error": "heartbeat: " + err.Error()})
		return
	}
	node := r.PathValue("node")
	s.Agents.Heartbeat(node, hb, s.opts.Now())
	writeJSON(w, http.StatusOK, s.Agents.Config(node))
}

func (s *Service) handleSetConfig(w http.ResponseWriter, r *http.Request) {
	var c AgentConfig
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&c); err != nil {
		writeError(w, http.StatusBadRequest, map[string]any{"error": "config: " + err.Error()})
		return
	}
	if err := s.Agents.SetConfig(r.PathValue("node"), c); err != nil {
		writeError(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// timeRange reads from/to (default: the last hour).
func (s *Service) timeRange(r *http.Request) (from, to time.Time, err error) {
	now := s.opts.Now()
	if to, err = ParseTime(r.URL.Query().Get("to"), now, now); err != nil {
		return
	}
	from, err = ParseTime(r.URL.Query().Get("from"), to.Add(-time.Hour), now)
	return
}

// ParseTime reads an RFC 3339 time, unix seconds, or a duration before now
// ("5m", "-5m"); empty gives def.
func ParseTime(v string, def, now time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(f*1e9)), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("time " + strconv.Quote(v) + ": want RFC 3339, unix seconds or a duration like 5m")
}

func (s *Service) handleSearch(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, map[string]any{"error": "limit " + strconv.Quote(v) + ": want a number"})
			return
		}
	}
	flows, err := s.Search(r.URL.Query().Get("filter"), from, to, limit)
	if err != nil {
		writeFilterError(w, err)
		return
	}
	if flows == nil {
		flows = []Flow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"flows": flows})
}

func writeFilterError(w http.ResponseWriter, err error) {
	var fe *filter.Error
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, map[string]any{"error": fe.Msg, "position": fe.Pos})
		return
	}
	writeError(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
}

func (s *Service) handleTop(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	by := r.URL.Query().Get("by")
	if !ValidTopBy(by) {
		writeError(w, http.StatusBadRequest, map[string]any{"error": "by " + strconv.Quote(by) + `: want "pair" or an endpoint field such as src.namespace, dst.port, dst.service, proto`})
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	entries, err := s.TopWhere(r.URL.Query().Get("filter"), by, from, to, n)
	if err != nil {
		writeFilterError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"by": by, "entries": entries})
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	d, err := s.Get(r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, map[string]any{"error": "flow " + strconv.Quote(r.PathValue("id")) + " not found"})
	case err != nil:
		writeError(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, body map[string]any) { writeJSON(w, status, body) }
