// Package auth decides who may do what: API tokens and the principals they
// stand for, roles, and the permissions every API route requires.
package auth

import "strings"

// Permission names what a route does, as "<area>.<verb>". The verb decides
// which roles hold it, so a new area needs no edit here:
//
//	<area>.read    viewer, operator, owner, admin  (e.g. inventory.read)
//	<area>.write   operator, owner, admin          (e.g. inventory.write)
//	<area>.own     owner, admin                    (e.g. policy.own: edit scopes, intents, versions)
//	admin.<what>   admin only                      (tokens, credentials, DB import, enrollment)
//	agent.report   an enrolled agent, for its own node only
//	metrics.scrape metrics-reader, admin
//	public         nobody needs to authenticate (/healthz, the console's files)
//
// Every route declares one (internal/httpapi refuses a route without).
type Permission string

// The permissions of Palisade's own routes. Other areas name theirs in the
// same pattern where they register their routes.
const (
	Public          Permission = "public"
	StatusRead      Permission = "status.read"
	InventoryRead   Permission = "inventory.read"
	InventoryWrite  Permission = "inventory.write"
	InventoryOwn    Permission = "inventory.own" // a scoped caller's saved filters (internal/server/filters.go)
	FlowsRead       Permission = "flows.read"
	AgentsRead      Permission = "agents.read"
	AgentsWrite     Permission = "agents.write"
	AgentReport     Permission = "agent.report"
	VulnRead        Permission = "vuln.read"
	PolicyRead      Permission = "policy.read"
	PolicyWrite     Permission = "policy.write" // analyze side effects, enforce, discover, acknowledge
	PolicyEdit      Permission = "policy.own"   // scopes, intents, versions, imports
	EnforceRead     Permission = "enforcement.read"
	EnforceWrite    Permission = "enforcement.write"
	AdminTokens     Permission = "admin.tokens"
	AdminRegistries Permission = "admin.registries"
	AdminVulnDB     Permission = "admin.vulndb"
	AdminAgents     Permission = "admin.agents"
	AuditRead       Permission = "admin.audit"
	MetricsScrape   Permission = "metrics.scrape"
)

// Verb is the part after the last dot: "read", "write", ...
func (p Permission) Verb() string {
	_, v, _ := strings.Cut(string(p), ".")
	return v
}

// Area is the part before the first dot.
func (p Permission) Area() string {
	a, _, _ := strings.Cut(string(p), ".")
	return a
}

// Valid reports whether p follows the naming pattern above.
func (p Permission) Valid() bool {
	if p == Public {
		return true
	}
	a, v, ok := strings.Cut(string(p), ".")
	return ok && a != "" && v != "" && !strings.ContainsAny(string(p), " \t\n*")
}
