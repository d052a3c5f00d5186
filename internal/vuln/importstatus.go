package vuln

import (
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/vuln/osv"
)

// ImportStatus tells what the vulnerability database's imports did since
// the service started: the last one finished and the one running, with
// its progress. (The database itself keeps no import time; after a
// restart Last is empty until the next import.)
type ImportStatus struct {
	Running *ImportProgress `json:"running,omitempty"`
	Last    *ImportResult   `json:"last,omitempty"`
}

// ImportProgress is an import under way: Done of Total documents read
// (Total is 0 until the source has been listed).
type ImportProgress struct {
	Path    string    `json:"path"`
	Started time.Time `json:"started"`
	Done    int       `json:"done"`
	Total   int       `json:"total"`
}

// ImportResult is a finished import.
type ImportResult struct {
	Path     string          `json:"path"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Stats    osv.ImportStats `json:"stats"`
	Error    string          `json:"error,omitempty"`
}

type importTracker struct {
	mu sync.Mutex
	st ImportStatus
}

// begin records an import of path starting and returns progress wrapped
// to record it too.
func (t *importTracker) begin(path string, progress osv.Progress) osv.Progress {
	t.mu.Lock()
	t.st.Running = &ImportProgress{Path: path, Started: time.Now().UTC()}
	t.mu.Unlock()
	return func(done, total int) {
		t.mu.Lock()
		if r := t.st.Running; r != nil {
			r.Done, r.Total = done, total
		}
		t.mu.Unlock()
		if progress != nil {
			progress(done, total)
		}
	}
}

// end records the running import's outcome.
func (t *importTracker) end(stats osv.ImportStats, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &ImportResult{Finished: time.Now().UTC(), Stats: stats}
	if run := t.st.Running; run != nil {
		r.Path, r.Started = run.Path, run.Started
	}
	if err != nil {
		r.Error = err.Error()
	}
	t.st.Running, t.st.Last = nil, r
}

// ImportStatus returns the imports' status (a copy).
func (s *Service) ImportStatus() ImportStatus {
	s.imports.mu.Lock()
	defer s.imports.mu.Unlock()
	out := ImportStatus{}
	if r := s.imports.st.Running; r != nil {
		c := *r
		out.Running = &c
	}
	if l := s.imports.st.Last; l != nil {
		c := *l
		out.Last = &c
	}
	return out
}
