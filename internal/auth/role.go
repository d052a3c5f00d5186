package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a token may do. Owner, operator and viewer are granted
// either everywhere (a token without a scope) or on one scope and,
// inherited, its descendants (Principal.Scope): a platform team delegates a
// child scope to an application team with a token bound to it.
type Role string

// Roles.
const (
	Admin         Role = "admin"          // everything, including tokens, credentials, enrollment
	Owner         Role = "owner"          // operator's rights, and edit the scope's policies, versions and child scopes
	Operator      Role = "operator"       // read; analyze, enforce, discover, acknowledge alerts
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
	// Scope binds the role to a scope and its descendants ("": the role
	// holds everywhere). Reads then show only what the scope may see.
	Scope string `json:"scope,omitempty"`
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

// Scoped reports whether p's role holds only within a scope.
func (p Principal) Scoped() bool { return p.Scope != "" }

// Ancestry returns a scope's ancestors from the top down and the scope
// itself last (ok false: no such scope). internal/policy's scope tree
// plugs in here.
type Ancestry func(scope string) (path []string, ok bool)

// Authorizer decides requests.
type Authorizer struct {
	// Scopes, when set, is the scope tree scoped decisions are made
	// against; without it a scoped principal is refused every scoped
	// decision.
	Scopes Ancestry
}

// Authorize returns nil when p may use perm (on scope, when not empty),
// else an error wrapping ErrForbidden that says why. A principal bound to
// a scope holds its role on that scope and every descendant, nowhere
// else; an unbound one everywhere.
func (a *Authorizer) Authorize(ctx context.Context, p Principal, perm Permission, scope string) error {
	if !p.Role.Allows(perm) {
		return fmt.Errorf("%w: %s (role %s) lacks permission %s", ErrForbidden, p, p.Role, perm)
	}
	if scope == "" || !p.Scoped() {
		return nil
	}
	if !a.Within(scope, p.Scope) {
		return fmt.Errorf("%w: %s (role %s on scope %s) may not use %s on scope %s", ErrForbidden, p, p.Role, p.Scope, perm, scope)
	}
	return nil
}

// Within reports whether scope is ancestor or one of its descendants (an
// unknown scope is within nothing).
func (a *Authorizer) Within(scope, ancestor string) bool {
	if a == nil || a.Scopes == nil {
		return false
	}
	path, ok := a.Scopes(scope)
	return ok && slices.Contains(path, ancestor)
}
