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
}

// Agents is the registry of node agents: their configuration and health.
type Agents struct {
	mu    sync.Mutex
	nodes map[string]*AgentStatus
	// OnConfig, when set, is called after a configuration change so the
	// caller can persist it (the server keeps modes across restarts).
	OnConfig func(node string, c AgentConfig)
}

// NewAgents returns an empty registry.
func NewAgents() *Agents { return &Agents{nodes: map[string]*AgentStatus{}} }

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
	out := make([]AgentStatus, 0, len(a.nodes))
	for _, st := range a.nodes {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
