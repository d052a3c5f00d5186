package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Role is what a token may do. Roles other than admin are granted on a
// scope once scopes exist (internal/policy); until then they hold
// everywhere.
type Role string

// Roles.
const (
	Admin         Role = "admin"          // everything, including tokens, credentials, enrollment
	Owner         Role = "owner"          // read and change everything of a scope (and delegate it, later)
	Operator      Role = "operator"       // read and change (policies, filters, agent modes)
	Viewer        Role = "viewer"         // read
	MetricsReader Role = "metrics-reader" // scrape /metrics
	Agent         Role = "agent"          // a node agent: report and read its own node's configuration
)

// Roles a token can be created with (Agent comes from enrollment).
var TokenRoles = []Role{Admin, Owner, Operator, Viewer, MetricsReader}

// ParseRole checks a role named by a user.
func ParseRole(s string) (Role, error) {
	for _, r := range TokenRoles {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(TokenRoles))
	for i, r := range TokenRoles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("role %q: want one of %s", s, strings.Join(names, ", "))
}

// Allows reports whether the role holds permission p (see Permission for
// the naming rule that decides it).
func (r Role) Allows(p Permission) bool {
	if p == Public {
		return true
	}
	switch r {
	case Admin:
		return true
	case MetricsReader:
		return p == MetricsScrape
	case Agent:
		return p == AgentReport || p == AgentsRead
	}
	if p.Area() == "admin" || p == MetricsScrape || p == AgentReport {
		return false
	}
	switch p.Verb() {
	case "read":
		return r == Viewer || r == Operator || r == Owner
	case "write":
		return r == Operator || r == Owner
	case "own":
		return r == Owner
	}
	return false
}

// Principal is who is calling.
type Principal struct {
	Name    string `json:"name"`
	Role    Role   `json:"role"`
	TokenID string `json:"tokenId,omitempty"`
	// Node binds an agent to its node; "" for people and (until agents
	// are enrolled) the shared agent token.
	Node string `json:"node,omitempty"`
}

func (p Principal) String() string {
	if p.Node != "" {
		return "agent:" + p.Node
	}
	return p.Name
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext is the caller of a request (ok false: unauthenticated).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Who names the caller of ctx for audit records ("anonymous" when none).
func Who(ctx context.Context) string {
	if p, ok := FromContext(ctx); ok {
		return p.String()
	}
	return "anonymous"
}

// ErrForbidden is a refusal by the authorizer.
var ErrForbidden = errors.New("forbidden")

// ScopeCheck decides whether p may use permission perm on scope (a
// non-empty scope name). internal/policy's scopes plug in here.
type ScopeCheck func(ctx context.Context, p Principal, perm Permission, scope string) error

// Authorizer decides requests.
type Authorizer struct {
	// Scopes, when set, is asked for every scoped decision after the role
	// allowed the permission.
	Scopes ScopeCheck
}

// Authorize returns nil when p may use perm (on scope, when not empty),
// else an error wrapping ErrForbidden that says why.
func (a *Authorizer) Authorize(ctx context.Context, p Principal, perm Permission, scope string) error {
	if !p.Role.Allows(perm) {
		return fmt.Errorf("%w: %s (role %s) lacks permission %s", ErrForbidden, p, p.Role, perm)
	}
	if scope != "" && a != nil && a.Scopes != nil && p.Role != Admin {
		if err := a.Scopes(ctx, p, perm, scope); err != nil {
			return fmt.Errorf("%w: %v", ErrForbidden, err)
		}
	}
	return nil
}
