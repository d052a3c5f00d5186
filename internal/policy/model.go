package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Action is what an intent or a catch-all does with a flow.
type Action uint8

const (
	// NoAction is the zero Action: no decision (an unscoped side).
	NoAction Action = iota
	Allow
	Deny
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	}
	return ""
}

// ParseAction reads ALLOW or DENY (any case).
func ParseAction(s string) (Action, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "ALLOW":
		return Allow, nil
	case "DENY":
		return Deny, nil
	}
	return NoAction, fmt.Errorf("action %q: want ALLOW or DENY", s)
}

func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

func (a *Action) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = NoAction
		return nil
	}
	v, err := ParseAction(string(b))
	*a = v
	return err
}

// Class is an intent's precedence class.
type Class uint8

const (
	// Default intents are decided child first, then ancestors.
	Default Class = iota
	// Absolute intents are decided before every default intent, ancestors
	// first.
	Absolute
)

func (c Class) String() string {
	if c == Absolute {
		return "absolute"
	}
	return "default"
}

// ParseClass reads absolute or default (empty: default).
func ParseClass(s string) (Class, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return Default, nil
	case "absolute":
		return Absolute, nil
	}
	return Default, fmt.Errorf("class %q: want absolute or default", s)
}

func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *Class) UnmarshalText(b []byte) error {
	v, err := ParseClass(string(b))
	*c = v
	return err
}

// Direction restricts the side of a flow an intent decides.
type Direction uint8

const (
	// Both: the intent takes part in egress and ingress decisions.
	Both Direction = iota
	// Egress: only in the decision of the consumer's scope.
	Egress
	// Ingress: only in the decision of the provider's scope.
	Ingress
)

func (d Direction) String() string {
	switch d {
	case Egress:
		return "egress"
	case Ingress:
		return "ingress"
	}
	return "both"
}

// ParseDirection reads egress, ingress or both (empty: both).
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "both":
		return Both, nil
	case "egress":
		return Egress, nil
	case "ingress":
		return Ingress, nil
	}
	return Both, fmt.Errorf("direction %q: want egress, ingress or both", s)
}

func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	*d = v
	return err
}

// has reports whether an intent of direction d takes part in side's decisions.
func (d Direction) has(side Direction) bool { return d == Both || d == side }

// Verdict compares a policy decision with what the network did.
type Verdict uint8

const (
	// Unscoped: neither end of the flow is in a scope, so no policy decides it.
	Unscoped Verdict = iota
	// Permitted: the policy allows the flow and it was answered.
	Permitted
	// Escaped: the policy denies the flow but it was answered.
	Escaped
	// Rejected: the policy denies the flow and it was not answered.
	Rejected
	// Misdropped: the policy allows the flow but it was not answered.
	Misdropped
)

// Verdicts lists the verdicts in report order.
var Verdicts = []Verdict{Permitted, Escaped, Rejected, Misdropped, Unscoped}

func (v Verdict) String() string {
	switch v {
	case Permitted:
		return "permitted"
	case Escaped:
		return "escaped"
	case Rejected:
		return "rejected"
	case Misdropped:
		return "misdropped"
	}
	return "unscoped"
}

// ParseVerdict reads a verdict name (any case).
func ParseVerdict(s string) (Verdict, error) {
	for _, v := range Verdicts {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return Unscoped, fmt.Errorf("verdict %q: want permitted, escaped, rejected, misdropped or unscoped", s)
}

func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v *Verdict) UnmarshalText(b []byte) error {
	x, err := ParseVerdict(string(b))
	*v = x
	return err
}

// VerdictOf is the verdict of a decision a given network outcome: replied
// means the server side answered (the flow's replied field).
func VerdictOf(a Action, replied bool) Verdict {
	switch {
	case a == Allow && replied:
		return Permitted
	case a == Allow:
		return Misdropped
	case a == Deny && replied:
		return Escaped
	case a == Deny:
		return Rejected
	}
	return Unscoped
}

// RootScope is the name of the implicit root of the scope tree. It holds
// every workload and no intents; a scope without a parent is its child.
const RootScope = "root"

// Scope is a node of the scope tree.
type Scope struct {
	Name string `json:"name"`
	// Parent is the parent scope's name; empty means the root.
	Parent string `json:"parent,omitempty"`
	// Filter selects the members among the parent's members.
	Filter string `json:"filter"`
	// CatchAll decides a side of a flow that no intent matched. Zero
	// (unset) means DENY.
	CatchAll    Action `json:"catchAll,omitempty"`
	Description string `json:"description,omitempty"`
}

// Policy is one intent. Its fields are those of the YAML document
// `kind: Policy`.
type Policy struct {
	// Name identifies the intent within its scope's version. Unnamed
	// intents are identified by their Key (consumer, provider, ports).
	Name     string `json:"name,omitempty"`
	Scope    string `json:"scope"`
	Consumer string `json:"consumer"`
	Provider string `json:"provider"`
	Action   Action `json:"action"`
	// Ports are "tcp/80", "tcp/1000-2000", "tcp/http", "udp", "any"; empty
	// means every protocol and port.
	Ports     []string  `json:"ports,omitempty"`
	Class     Class     `json:"class"`
	Priority  int       `json:"priority,omitempty"` // 0: DefaultPriority
	Direction Direction `json:"direction,omitempty"`
}

// DefaultPriority is the priority of an intent that gives none.
const DefaultPriority = 100

// EffectivePriority is Priority, or DefaultPriority when unset.
func (p *Policy) EffectivePriority() int {
	if p.Priority == 0 {
		return DefaultPriority
	}
	return p.Priority
}

// Key identifies an intent within a version: its name, or for an unnamed
// intent its consumer, provider and ports in canonical form, so applying
// the same unnamed intent again with another action or priority changes
// it rather than adding a second one.
func (p *Policy) Key() string {
	if p.Name != "" {
		return "name:" + p.Name
	}
	return canonicalEndpoint(p.Consumer) + " → " + canonicalEndpoint(p.Provider) + " " + strings.Join(canonicalPorts(p.Ports), ",")
}

// VersionState tells whether a version may still change.
type VersionState string

const (
	// Draft versions change freely.
	Draft VersionState = "draft"
	// Analyzed versions have been analyzed and are immutable.
	Analyzed VersionState = "analyzed"
	// Enforced is the version a scope's enforcement uses (immutable).
	Enforced VersionState = "enforced"
)

// Version is a numbered policy set of one scope: v1, v2, … Once analyzed
// or enforced it never changes; changes then make the next version.
type Version struct {
	Scope  string `json:"scope"`
	Name   string `json:"version"` // "v1", "v2", …
	Number int    `json:"number"`
	// CatchAll is the scope's catch-all as of this version (zero: the
	// scope's, DENY if the scope has none).
	CatchAll  Action       `json:"catchAll,omitempty"`
	Policies  []Policy     `json:"policies"`
	State     VersionState `json:"state"`
	Source    string       `json:"source,omitempty"` // e.g. "networkpolicy import"
	Created   time.Time    `json:"created"`
	CreatedBy string       `json:"createdBy"`
	Updated   time.Time    `json:"updated"`
	UpdatedBy string       `json:"updatedBy"`
}

// Frozen reports whether the version may no longer change.
func (v *Version) Frozen() bool { return v.State == Analyzed || v.State == Enforced }

// VersionName is "v" and the number.
func VersionName(n int) string { return fmt.Sprintf("v%d", n) }

// ParseVersionName reads "v3" (or "3") as 3.
func ParseVersionName(s string) (int, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "v")
	var n int
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || n <= 0 || VersionName(n) != "v"+t {
		return 0, fmt.Errorf("version %q: want v1, v2, …", s)
	}
	return n, nil
}

// Clone returns a deep copy of v.
func (v *Version) Clone() *Version {
	c := *v
	c.Policies = make([]Policy, len(v.Policies))
	for i, p := range v.Policies {
		p.Ports = append([]string(nil), p.Ports...)
		c.Policies[i] = p
	}
	return &c
}

// MarshalJSON keeps Policies an array, never null.
func (v Version) MarshalJSON() ([]byte, error) {
	type plain Version
	if v.Policies == nil {
		v.Policies = []Policy{}
	}
	return json.Marshal(plain(v))
}
