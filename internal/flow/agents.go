package flow

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// AgentConfig is what the server tells a node's agent.
type AgentConfig struct {
	Mode string `json:"mode"` // ConversationMode (default) or DetailedMode
}

// Heartbeat is what an agent reports about itself.
type Heartbeat struct {
	Agent        string `json:"agent"`
	FlowsSeen    uint64 `json:"flowsSeen"`
	FlowsSent    uint64 `json:"flowsSent"`
	FlowsDropped uint64 `json:"flowsDropped"`
	Spooled      uint64 `json:"spooled"` // records waiting in the agent's disk spool
	Mode         string `json:"mode,omitempty"`
	// Version and Commit are the agent's build (package version).
	Version string `json:"version,omitempty"`
	Commit  string `json:"commit,omitempty"`
}

// AgentStatus is one node's agent as the server sees it.
type AgentStatus struct {
	Node     string      `json:"node"`
	Config   AgentConfig `json:"config"`
	LastSeen time.Time   `json:"lastSeen,omitzero"`
	Batches  uint64      `json:"batches"`
	Health   Heartbeat   `json:"health"`
	// Refused is set while calls for this node are being refused
	// (a wrong, revoked or another node's credential).
	Refused *AgentRefusal `json:"refused,omitempty"`
}

// AgentRefusal says why calls for a node were refused, how often, and
// the last time.
type AgentRefusal struct {
	Reason string    `json:"reason"`
	Count  uint64    `json:"count"`
	Last   time.Time `json:"last"`
	Remote string    `json:"remote,omitempty"` // the caller's address
}

// maxRefused bounds the refusals kept for nodes the registry does not
// know, so refused callers cannot grow it without limit.
const maxRefused = 256

// Agents is the registry of node agents: their configuration and health.
type Agents struct {
	mu      sync.Mutex
	nodes   map[string]*AgentStatus
	refused map[string]*AgentRefusal // nodes never accepted
	// OnConfig, when set, is called after a configuration change so the
	// caller can persist it (the server keeps modes across restarts).
	OnConfig func(node string, c AgentConfig)
}

// NewAgents returns an empty registry.
func NewAgents() *Agents {
	return &Agents{nodes: map[string]*AgentStatus{}, refused: map[string]*AgentRefusal{}}
}

// Refuse records a refused call for node (shown by List until the node's
// agent is accepted again).
func (a *Agents) Refuse(node, reason, remote string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var r *AgentRefusal
	if st := a.nodes[node]; st != nil {
		if st.Refused == nil {
			st.Refused = &AgentRefusal{}
		}
		r = st.Refused
	} else if r = a.refused[node]; r == nil {
		if len(a.refused) >= maxRefused {
			var oldest string
			for n, x := range a.refused {
				if oldest == "" || x.Last.Before(a.refused[oldest].Last) {
					oldest = n
				}
			}
			delete(a.refused, oldest)
		}
		r = &AgentRefusal{}
		a.refused[node] = r
	}
	r.Reason, r.Remote, r.Last = reason, remote, at
	r.Count++
}

func (a *Agents) get(node string) *AgentStatus {
	st := a.nodes[node]
	if st == nil {
		st = &AgentStatus{Node: node, Config: AgentConfig{Mode: ConversationMode}}
		a.nodes[node] = st
	}
	return st
}

func (a *Agents) seen(node, agent string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.get(node)
	st.LastSeen = at
	st.Batches++
	st.Refused = nil
	delete(a.refused, node)
	if st.Health.Agent == "" {
		st.Health.Agent = agent
	}
}

// Heartbeat records an agent's health report.
func (a *Agents) Heartbeat(node string, hb Heartbeat, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.get(node)
	st.LastSeen = at
	st.Health = hb
	st.Refused = nil
	delete(a.refused, node)
}

// Config returns a node's agent configuration (the default for a node
// never seen). A read never adds a node: a caller asking for random names
// leaves the registry as it was.
func (a *Agents) Config(node string) AgentConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.nodes[node]; st != nil {
		return st.Config
	}
	return AgentConfig{Mode: ConversationMode}
}

// Len is the number of nodes the registry knows.
func (a *Agents) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.nodes)
}

// SetConfig changes a node's agent configuration.
func (a *Agents) SetConfig(node string, c AgentConfig) error {
	if c.Mode != ConversationMode && c.Mode != DetailedMode {
		return fmt.Errorf("mode %q: want %q or %q", c.Mode, ConversationMode, DetailedMode)
	}
	a.mu.Lock()
	a.get(node).Config = c
	hook := a.OnConfig
	a.mu.Unlock()
	if hook != nil {
		hook(node, c)
	}
	return nil
}

// List returns every known agent, by node name.
func (a *Agents) List() []AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AgentStatus, 0, len(a.nodes)+len(a.refused))
	for _, st := range a.nodes {
		c := *st
		if st.Refused != nil {
			r := *st.Refused
			c.Refused = &r
		}
		out = append(out, c)
	}
	for node, r := range a.refused {
		c := *r
		out = append(out, AgentStatus{Node: node, Config: AgentConfig{Mode: ConversationMode}, Refused: &c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
