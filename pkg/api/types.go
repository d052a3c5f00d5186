package api

import (
	"encoding/json"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	flowstore "github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln"
)

// The domain records travel as they are; the aliases let clients outside
// this module name them.
type (
	Workload       = inventory.Workload
	InventoryEvent = inventory.Event
	Flow           = flow.Flow
	FlowDetail     = flow.Detail
	TopEntry       = flow.TopEntry
	Batch          = flow.Batch
	Observation    = flow.Observation
	IngestResponse = flow.IngestResponse
	AgentConfig    = flow.AgentConfig
	Heartbeat      = flow.Heartbeat
	AgentStatus    = flow.AgentStatus
	FlowMetrics    = flow.Metrics
	FlowStoreStats = flowstore.Stats
	ScannerStatus  = vuln.Status
)

// Status answers GET /api/v1/status.
//
// A caller bound to a scope (per-scope RBAC) gets it over what the scope
// makes visible: Scope names the scope, Workloads counts its current
// workloads, Connectors carry their cluster and state only (no API
// server address, no error text), and FlowStore and Scanner, which
// describe everyone's data, are left out.
type Status struct {
	Version    string            `json:"version"`
	Commit     string            `json:"commit,omitempty"` // the server's build
	Started    time.Time         `json:"started"`
	Scope      string            `json:"scope,omitempty"`
	Workloads  int               `json:"workloads"`
	Connectors []ConnectorStatus `json:"connectors"`
	FlowStore  *FlowStoreStats   `json:"flowStore,omitempty"`
	// Scanner: the vulnerability database, layer cache and scan queue.
	Scanner *ScannerStatus `json:"scanner,omitempty"`
}

// ConnectorStatus is one Kubernetes connector's state: "connecting",
// "synced" or "degraded".
type ConnectorStatus struct {
	Cluster  string    `json:"cluster"`
	Server   string    `json:"server"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	Since    time.Time `json:"since"`
	LastSync time.Time `json:"lastSync,omitempty"`
}

// InventoryList answers GET /api/v1/inventory.
type InventoryList struct {
	Count int         `json:"count"`
	Items []*Workload `json:"items"`
}

// WorkloadDetail answers GET /api/v1/inventory/{id}.
type WorkloadDetail struct {
	Workload *Workload        `json:"workload"`
	History  []InventoryEvent `json:"history"`
	// Scopes are the policy scopes the workload belongs to.
	Scopes []string `json:"scopes"`
}

// External is the body of POST /api/v1/external: a user-defined workload
// outside the clusters.
type External struct {
	Name   string            `json:"name"`
	CIDRs  []string          `json:"cidrs"`
	Labels map[string]string `json:"labels,omitempty"`
}

// SavedFilter is a named inventory filter (POST|GET /api/v1/filters).
type SavedFilter struct {
	Name        string `json:"name"`
	Filter      string `json:"filter"`
	Description string `json:"description,omitempty"`
	// Scope owns the filter: callers bound to it or to an ancestor see
	// it (owners there change it), and so do callers bound to no scope.
	// "" is global: saved by a caller bound to no scope, by YAML, or
	// before filters had owners; callers bound to a scope neither see
	// nor change those. A scoped caller's new filter is its scope's
	// unless it names a descendant.
	Scope   string    `json:"scope,omitempty"`
	Created time.Time `json:"created"`
}

// FlowList answers GET /api/v1/flows.
type FlowList struct {
	Flows []Flow `json:"flows"`
}

// TopList answers GET /api/v1/flows/top.
type TopList struct {
	By      string     `json:"by"`
	Entries []TopEntry `json:"entries"`
}

// AgentList answers GET /api/v1/agents.
type AgentList struct {
	Agents []AgentStatus `json:"agents"`
}

// Credentials is the body of POST /api/v1/registries/{name}/credentials.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// VulnDBImport is the body of POST /api/v1/vulndb/import.
type VulnDBImport struct {
	Path string `json:"path"`
}

// TokenRequest is the body of POST /api/v1/tokens. Role is one of admin,
// owner, operator, viewer, metrics-reader.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Scope binds an owner, operator or viewer token to a scope and its
	// descendants: a name, or the path "PARENT:CHILD" ("": everywhere).
	Scope string `json:"scope,omitempty"`
}

// Token is an API token as listed (GET /api/v1/tokens): never its secret.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Scope     string     `json:"scope,omitempty"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"createdBy,omitempty"`
	Revoked   *time.Time `json:"revoked,omitempty"`
}

// NewToken answers POST /api/v1/tokens: the only time the secret is shown.
type NewToken struct {
	Token
	Secret string `json:"token"`
}

// Whoami answers GET /api/v1/whoami.
type Whoami struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Scope   string `json:"scope,omitempty"`
	TokenID string `json:"tokenId,omitempty"`
	Node    string `json:"node,omitempty"`
}

// AuditRecord is one change in GET /api/v1/audit: who, what, when, the
// outcome, the state before (when the endpoint can tell) and after (the
// request and the answer, secrets redacted).
type AuditRecord struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Who    string          `json:"who"`
	Role   string          `json:"role,omitempty"`
	Action string          `json:"action"`
	Path   string          `json:"path"`
	Status int             `json:"status"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}
