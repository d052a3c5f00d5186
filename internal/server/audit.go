package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// auditedBytes caps what the log keeps of a request's or answer's body.
const auditedBytes = 64 << 10

// audited records every write a person makes (who, what, when, the
// outcome, the state before when the route can tell it, and the request
// and answer with secrets redacted). Agents' reports are data, not
// changes: they are not audited.
func (s *Server) audited(rt Route, p auth.Principal, h http.Handler) http.Handler {
	if rt.Method == http.MethodGet || rt.Method == http.MethodHead || rt.Perm == auth.AgentReport {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var before json.RawMessage
		if rt.Before != nil {
			if v := rt.Before(r); v != nil {
				b, _ := json.Marshal(v)
				before = audit.Redact(b, auditedBytes)
			}
		}
		var reqBody []byte
		if r.Body != nil && r.Body != http.NoBody {
			// The body is already capped by the route's MaxBody.
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(r.Body); err != nil {
				httpapi.WriteError(w, err)
				return
			}
			reqBody = buf.Bytes()
			r.Body = readCloser{bytes.NewReader(reqBody)}
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		after := map[string]json.RawMessage{}
		if len(reqBody) > 0 {
			after["request"] = audit.Redact(reqBody, auditedBytes)
		}
		if rec.body.Len() > 0 {
			after["answer"] = audit.Redact(rec.body.Bytes(), auditedBytes)
		}
		ab, _ := json.Marshal(after)
		err := s.audit.Append(audit.Record{Time: time.Now().UTC(), Who: p.String(), Role: string(p.Role),
			Action: rt.String(), Path: r.URL.Path, Status: rec.status, Before: before, After: ab})
		if err != nil {
			slog.Error("audit: cannot record a change", "action", rt.String(), "who", p.String(), "err", err)
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// recorder keeps an answer's status and its first auditedBytes bytes.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if room := auditedBytes - r.body.Len(); room > 0 {
		r.body.Write(b[:min(len(b), room)])
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func init() { addRoutes((*Server).auditRoutes) }

func (s *Server) auditRoutes() []Route {
	return []Route{{Method: "GET", Pattern: "/api/v1/audit", Perm: auth.AuditRead, Handler: s.listAudit}}
}

// listAudit answers GET /api/v1/audit?since=T&who=NAME&path=PREFIX&limit=N,
// oldest first.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := flow.ParseTime(q.Get("since"), time.Time{}, time.Now())
	if err != nil {
		httpapi.WriteError(w, api.BadRequest("since", "since: %v", err))
		return
	}
	limit, err := httpapi.QueryInt(r, "limit", 100, 1, 10000)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	recs, err := s.audit.List(audit.Query{Since: since, Who: q.Get("who"), Path: q.Get("path"), Limit: limit})
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	httpapi.WriteJSON(w, http.StatusOK, recs)
}
