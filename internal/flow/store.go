package flow

import "sort"

// Store keeps flows and the agent records not yet turned into flows. The
// embedded implementation is internal/flow/store; a PostgreSQL one can
// follow behind the same interface. Every method is safe for concurrent use.
type Store interface {
	// Log durably records a batch of agent observations before they become
	// flows: once it returns, the batch survives a crash.
	Log(b *Batch) error
	// Pending returns the logged observations (and NAT mappings) not yet
	// stored as flows, for the pipeline to take up after a restart.
	Pending() ([]Batch, error)
	// Append durably stores flows together with the agent records (by
	// Agent, Seq) they were made of: both or neither survive a crash.
	Append(flows []Flow, obs Seqs) error
	// Replace durably replaces stored flows by new versions with the same
	// IDs and starts (a related flow arrived after them and links them).
	// A flow not stored (any more) is ignored.
	Replace(flows []Flow) error
	// AppendReplace is Append and Replace in one durable write: all or
	// nothing survives a crash.
	AppendReplace(flows, updates []Flow, obs Seqs) error
	// Done reports whether the record (agent, seq) is stored as a flow.
	Done(agent string, seq uint64) bool
	// Search returns the flows overlapping [q.From, q.To] that match
	// q.Filter, newest first, at most q.Limit.
	Search(q Query) ([]Flow, error)
	// Get returns the flow with the given ID.
	Get(id string) (Flow, bool, error)
	// Top counts the flows of q (its Limit ignored) grouped by the field
	// by (see ValidTopBy; "pair" for src→dst workload pairs) and
	// returns the n largest groups by number of flows.
	Top(q Query, by string, n int) ([]TopEntry, error)
	Close() error
}

// TopEntry is one group of a Top query.
type TopEntry struct {
	Key   string `json:"key"`
	Flows uint64 `json:"flows"`
	Conns uint64 `json:"conns"`
	Bytes uint64 `json:"bytes"`
}

// RankTop orders Top groups by flows, most first, then by key, and keeps
// the first n (all when n <= 0): the one order every Top answers in.
func RankTop(out []TopEntry, n int) []TopEntry {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Flows != out[j].Flows {
			return out[i].Flows > out[j].Flows
		}
		return out[i].Key < out[j].Key
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// TopKey returns the key of f in a Top grouping by (see ValidTopBy).
func TopKey(f *Flow, by string) string {
	if by == "pair" {
		return endpointLabel(&f.Src) + " → " + endpointLabel(&f.Dst)
	}
	v, ok := f.Field(by)
	if !ok || len(v.Strs) == 0 {
		return ""
	}
	return v.Strs[0]
}

func endpointLabel(e *Endpoint) string {
	if e.Name != "" {
		if e.Namespace != "" {
			return e.Namespace + "/" + e.Name
		}
		return e.Name
	}
	return e.IP
}

// ValidTopBy reports whether Top can group by: "pair" or a field that
// depends only on the endpoints, protocol and destination port.
func ValidTopBy(by string) bool {
	if by == "pair" {
		return true
	}
	c := ClassOf(by)
	return Schema.ValidField(by) && (c == ClassSrc || c == ClassDst || c == ClassPair)
}
