package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// Kinds of policy-as-code documents.
const (
	KindScope           = "Scope"
	KindPolicy          = "Policy"
	KindInventoryFilter = "InventoryFilter"
	KindPolicyVersion   = "PolicyVersion"
)

// Pos is where something was written: file, 1-based line and column.
type Pos struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

func (p Pos) String() string {
	f := p.File
	if f == "" {
		f = "-"
	}
	if p.Line == 0 {
		return f
	}
	return fmt.Sprintf("%s:%d:%d", f, p.Line, p.Column)
}

// Error is one problem with a document: where, which field, what.
type Error struct {
	Pos   Pos    `json:"pos"`
	Field string `json:"field,omitempty"`
	Msg   string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Field + ": " + e.Msg
}

// Errors is every problem found in a set of documents, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// NamedFilter is an InventoryFilter document: a saved inventory filter.
type NamedFilter struct {
	Name        string `json:"name"`
	Filter      string `json:"filter"`
	Description string `json:"description,omitempty"`
}

// Document is one parsed YAML document.
type Document struct {
	Kind string
	Pos  Pos
	// fields records where each field was written, for later errors.
	fields map[string]Pos

	Scope  *Scope       // KindScope
	Policy *Policy      // KindPolicy
	Filter *NamedFilter // KindInventoryFilter
	// Version is the target version of a Policy ("": the newest draft) or
	// the content of a PolicyVersion (Name "" : the newest draft).
	Version *Version
}

// FieldPos returns where a field of the document was written (the
// document's position if it was not).
func (d *Document) FieldPos(field string) Pos {
	if p, ok := d.fields[field]; ok {
		return p
	}
	return d.Pos
}

func (d *Document) errorf(field, format string, args ...any) *Error {
	return &Error{Pos: d.FieldPos(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Name is "Kind/name" for messages.
func (d *Document) Name() string {
	switch d.Kind {
	case KindScope:
		return "Scope/" + d.Scope.Name
	case KindInventoryFilter:
		return "InventoryFilter/" + d.Filter.Name
	case KindPolicy:
		s := "Policy/" + d.Policy.Scope
		if d.Version.Name != "" {
			s += "@" + d.Version.Name
		}
		return s + " " + d.Policy.Key()
	case KindPolicyVersion:
		s := "PolicyVersion/" + d.Version.Scope
		if d.Version.Name != "" {
			s += "@" + d.Version.Name
		}
		return s
	}
	return d.Kind
}

// MaxDocumentBytes caps one apply's input.
const MaxDocumentBytes = 16 << 20

// ParseDocuments reads every YAML document of r (documents separated by
// ---). file names the input in errors. Unknown fields, missing required
// fields, malformed filters, ports and actions are errors with their
// position; ParseDocuments returns every document it could read and an
// Errors listing all the problems.
func ParseDocuments(file string, r io.Reader) ([]*Document, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocumentBytes+1))
	if err != nil {
		return nil, Errors{{Pos: Pos{File: file}, Msg: err.Error()}}
	}
	if len(data) > MaxDocumentBytes {
		return nil, Errors{{Pos: Pos{File: file}, Msg: fmt.Sprintf("larger than %d bytes", MaxDocumentBytes)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*Document
	var errs Errors
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, yamlError(file, err))
			break // the decoder cannot resume after a syntax error
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue // an empty document (a trailing ---)
		}
		d, derrs := parseDocument(file, n.Content[0])
		errs = append(errs, derrs...)
		if d != nil {
			docs = append(docs, d)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			a, b := errs[i].Pos, errs[j].Pos
			return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
		})
		return docs, errs
	}
	return docs, nil
}

// yamlError turns a yaml syntax error ("yaml: line 3: ...") into an *Error.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	if line == 0 {
		line = 1 // the library leaves out "line 1"
	}
	col := 1
	return &Error{Pos: Pos{File: file, Line: line, Column: col}, Msg: "invalid YAML: " + msg}
}

type fieldSpec struct {
	required bool
	list     bool
	number   bool
}

var kindFields = map[string]map[string]fieldSpec{
	KindScope: {"kind": {}, "name": {required: true}, "parent": {}, "filter": {required: true},
		"catchAll": {}, "description": {}},
	KindPolicy: {"kind": {}, "name": {}, "scope": {required: true}, "version": {},
		"consumer": {required: true}, "provider": {required: true}, "action": {required: true},
		"ports": {list: true}, "class": {}, "priority": {number: true}, "direction": {}},
	KindInventoryFilter: {"kind": {}, "name": {required: true}, "filter": {required: true}, "description": {}},
	KindPolicyVersion: {"kind": {}, "scope": {required: true}, "version": {}, "catchAll": {},
		"source": {}, "policies": {list: true}},
}

var policyItemFields = map[string]fieldSpec{"name": {}, "consumer": {required: true}, "provider": {required: true},
	"action": {required: true}, "ports": {list: true}, "class": {}, "priority": {number: true}, "direction": {}}

func nodePos(file string, n *yaml.Node) Pos { return Pos{File: file, Line: n.Line, Column: n.Column} }

// valueColumn is the column of a scalar's first character of content
// (after an opening quote).
func valueColumn(n *yaml.Node) int {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return n.Column + 1
	}
	return n.Column
}

// fieldsOf reads a mapping node into scalar and list values, checking
// names and shapes against spec. prefix qualifies field names in errors
// (e.g. "policies[2].").
func fieldsOf(file string, m *yaml.Node, spec map[string]fieldSpec, prefix string, pos map[string]Pos,
	scalars map[string]*yaml.Node, lists map[string][]*yaml.Node, nested map[string]*yaml.Node) Errors {
	var errs Errors
	if m.Kind != yaml.MappingNode {
		return Errors{{Pos: nodePos(file, m), Field: strings.TrimSuffix(prefix, "."), Msg: "want a mapping of fields"}}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		fs, known := spec[name]
		if !known {
			names := make([]string, 0, len(spec))
			for n := range spec {
				names = append(names, n)
			}
			sort.Strings(names)
			errs = append(errs, &Error{Pos: nodePos(file, k), Field: prefix + name, Msg: "unknown field (known: " + strings.Join(names, ", ") + ")"})
			continue
		}
		if seen[name] {
			errs = append(errs, &Error{Pos: nodePos(file, k), Field: prefix + name, Msg: "given twice"})
			continue
		}
		seen[name] = true
		pos[prefix+name] = Pos{File: file, Line: v.Line, Column: valueColumn(v)}
		switch {
		case name == "policies":
			if v.Kind != yaml.SequenceNode {
				errs = append(errs, &Error{Pos: nodePos(file, v), Field: prefix + name, Msg: "want a list of policies"})
				continue
			}
			nested[name] = v
		case fs.list:
			if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				lists[name] = []*yaml.Node{v} // ports: tcp/80 is a list of one
				continue
			}
			if v.Kind != yaml.SequenceNode && v.Tag != "!!null" {
				errs = append(errs, &Error{Pos: nodePos(file, v), Field: prefix + name, Msg: "want a list"})
				continue
			}
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					errs = append(errs, &Error{Pos: nodePos(file, e), Field: prefix + name, Msg: "want a list of strings"})
					continue
				}
			}
			lists[name] = v.Content
		default:
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, &Error{Pos: nodePos(file, v), Field: prefix + name, Msg: "want a single value"})
				continue
			}
			if fs.number {
				if _, err := strconv.Atoi(v.Value); err != nil {
					errs = append(errs, &Error{Pos: nodePos(file, v), Field: prefix + name, Msg: fmt.Sprintf("%q is not a whole number", v.Value)})
					continue
				}
			}
			scalars[name] = v
		}
	}
	for name, fs := range spec {
		if fs.required && !seen[name] {
			errs = append(errs, &Error{Pos: nodePos(file, m), Field: prefix + name, Msg: "missing (required)"})
		}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Pos.Line < errs[j].Pos.Line })
	return errs
}

func parseDocument(file string, n *yaml.Node) (*Document, Errors) {
	d := &Document{Pos: nodePos(file, n), fields: map[string]Pos{}}
	if n.Kind != yaml.MappingNode {
		return nil, Errors{{Pos: d.Pos, Msg: "a document must be a mapping with a kind"}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "kind" {
			d.Kind = n.Content[i+1].Value
			d.fields["kind"] = nodePos(file, n.Content[i+1])
		}
	}
	spec, ok := kindFields[d.Kind]
	if !ok {
		if d.Kind == "" {
			return nil, Errors{d.errorf("kind", "missing: want Scope, Policy, InventoryFilter or PolicyVersion")}
		}
		return nil, Errors{d.errorf("kind", "%q: want Scope, Policy, InventoryFilter or PolicyVersion", d.Kind)}
	}
	scalars := map[string]*yaml.Node{}
	lists := map[string][]*yaml.Node{}
	nested := map[string]*yaml.Node{}
	errs := fieldsOf(file, n, spec, "", d.fields, scalars, lists, nested)
	str := func(name string) string {
		if v := scalars[name]; v != nil {
			return v.Value
		}
		return ""
	}
	action := func(field string, dst *Action) {
		if v := scalars[field]; v != nil {
			a, err := ParseAction(v.Value)
			if err != nil {
				errs = append(errs, d.errorf(field, "%v", err))
			}
			*dst = a
		}
	}
	name := func(field string, required bool) string {
		s := str(field)
		if (s != "" || required) && !ValidName(s) {
			errs = append(errs, d.errorf(field, "%q: want 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", s))
		}
		return s
	}
	switch d.Kind {
	case KindScope:
		s := &Scope{Name: name("name", true), Parent: str("parent"), Filter: str("filter"), Description: str("description")}
		if s.Parent != "" && s.Parent != RootScope {
			name("parent", false)
		}
		if s.Name == RootScope {
			errs = append(errs, d.errorf("name", "%q is the implicit root scope", RootScope))
		}
		action("catchAll", &s.CatchAll)
		if f, err := parseFilterField(d, "filter", s.Filter); err != nil {
			errs = append(errs, err)
		} else {
			s.Filter = f
		}
		d.Scope = s
	case KindInventoryFilter:
		nf := &NamedFilter{Name: name("name", true), Filter: str("filter"), Description: str("description")}
		if f, err := parseFilterField(d, "filter", nf.Filter); err != nil {
			errs = append(errs, err)
		} else {
			nf.Filter = f
		}
		d.Filter = nf
	case KindPolicy:
		v := &Version{Scope: name("scope", true), Name: versionField(d, str("version"), &errs)}
		p, perrs := policyFrom(d, "", scalars, lists)
		errs = append(errs, perrs...)
		p.Scope = v.Scope
		d.Policy, d.Version = p, v
		v.Policies = []Policy{*p}
	case KindPolicyVersion:
		v := &Version{Scope: name("scope", true), Name: versionField(d, str("version"), &errs), Source: str("source")}
		action("catchAll", &v.CatchAll)
		v.Policies = []Policy{}
		if seq := nested["policies"]; seq != nil {
			for i, item := range seq.Content {
				prefix := fmt.Sprintf("policies[%d].", i)
				sc := map[string]*yaml.Node{}
				ls := map[string][]*yaml.Node{}
				ierrs := fieldsOf(file, item, policyItemFields, prefix, d.fields, sc, ls, nil)
				errs = append(errs, ierrs...)
				if len(ierrs) > 0 && item.Kind != yaml.MappingNode {
					continue
				}
				p, perrs := policyFrom(d, prefix, sc, ls)
				errs = append(errs, perrs...)
				p.Scope = v.Scope
				v.Policies = append(v.Policies, *p)
			}
		}
		seen := map[string]string{}
		for i := range v.Policies {
			k := v.Policies[i].Key()
			if prev, dup := seen[k]; dup {
				field := fmt.Sprintf("policies[%d]", i)
				errs = append(errs, d.errorf(field+".consumer", "the same intent as %s (%s); give one a name", prev, k))
			}
			seen[k] = fmt.Sprintf("policies[%d]", i)
		}
		d.Version = v
	}
	return d, errs
}

func versionField(d *Document, s string, errs *Errors) string {
	if s == "" {
		return ""
	}
	n, err := ParseVersionName(s)
	if err != nil {
		*errs = append(*errs, d.errorf("version", "%v", err))
		return ""
	}
	return VersionName(n)
}

// parseFilterField checks an inventory filter written in field and
// returns its canonical form; an error points at the filter's own column.
func parseFilterField(d *Document, field, src string) (string, *Error) {
	f, err := filter.Parse(src, inventory.Schema)
	if err != nil {
		return "", filterError(d, field, err)
	}
	return f.String(), nil
}

func filterError(d *Document, field string, err error) *Error {
	p := d.FieldPos(field)
	col := 1
	msg := err.Error()
	var fe *filter.Error
	var ee *EndpointError
	switch {
	case errors.As(err, &fe):
		col, msg = fe.Pos, fe.Msg
	case errors.As(err, &ee):
		col, msg = ee.Column, ee.Msg
	}
	p.Column += col - 1
	return &Error{Pos: p, Field: field, Msg: fmt.Sprintf("filter column %d: %s", col, msg)}
}

// policyFrom builds an intent from a Policy document or a policies[] item.
func policyFrom(d *Document, prefix string, scalars map[string]*yaml.Node, lists map[string][]*yaml.Node) (*Policy, Errors) {
	var errs Errors
	p := &Policy{}
	get := func(f string) string {
		if v := scalars[f]; v != nil {
			return v.Value
		}
		return ""
	}
	if s := get("name"); s != "" {
		if !ValidName(s) {
			errs = append(errs, d.errorf(prefix+"name", "%q: want 1-128 letters, digits, '.', '_' or '-'", s))
		}
		p.Name = s
	}
	for _, f := range []string{"consumer", "provider"} {
		src := get(f)
		if scalars[f] == nil {
			continue // reported as missing
		}
		ep, err := ParseEndpoint(src)
		if err != nil {
			errs = append(errs, filterError(d, prefix+f, err))
			continue
		}
		if f == "consumer" {
			p.Consumer = ep.String()
		} else {
			p.Provider = ep.String()
		}
		if ep.Kind == EndpointFilter && ep.Filter.String() == "" {
			if f == "consumer" {
				p.Consumer = "any"
			} else {
				p.Provider = "any"
			}
		}
	}
	if s := get("action"); scalars["action"] != nil {
		a, err := ParseAction(s)
		if err != nil {
			errs = append(errs, d.errorf(prefix+"action", "%v", err))
		}
		p.Action = a
	}
	if s := get("class"); s != "" {
		c, err := ParseClass(s)
		if err != nil {
			errs = append(errs, d.errorf(prefix+"class", "%v", err))
		}
		p.Class = c
	}
	if s := get("direction"); s != "" {
		dir, err := ParseDirection(s)
		if err != nil {
			errs = append(errs, d.errorf(prefix+"direction", "%v", err))
		}
		p.Direction = dir
	}
	if s := get("priority"); s != "" {
		n, _ := strconv.Atoi(s)
		if n < 1 || n > 1_000_000 {
			errs = append(errs, d.errorf(prefix+"priority", "%d: want 1-1000000 (smaller is decided first)", n))
		}
		p.Priority = n
	}
	for i, v := range lists["ports"] {
		r, err := ParsePort(v.Value)
		if err != nil {
			errs = append(errs, &Error{Pos: Pos{File: d.Pos.File, Line: v.Line, Column: valueColumn(v)}, Field: fmt.Sprintf("%sports[%d]", prefix, i), Msg: err.Error()})
			continue
		}
		p.Ports = append(p.Ports, r.String())
	}
	return p, errs
}

// Marshal renders documents as YAML, one per document, in the shape
// ParseDocuments reads, so `get -o yaml | apply -f -` round-trips.
func Marshal(w io.Writer, docs []any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return enc.Close()
}

// ScopeDoc is the YAML form of a scope.
func ScopeDoc(s Scope) any {
	m := yamlMap{{"kind", KindScope}, {"name", s.Name}}
	if s.Parent != "" {
		m = append(m, kv{"parent", s.Parent})
	}
	m = append(m, kv{"filter", s.Filter})
	if s.CatchAll != NoAction {
		m = append(m, kv{"catchAll", s.CatchAll.String()})
	}
	if s.Description != "" {
		m = append(m, kv{"description", s.Description})
	}
	return m
}

// PolicyDoc is the YAML form of an intent; version "" leaves it out (the
// newest draft).
func PolicyDoc(p Policy, version string) any {
	m := yamlMap{{"kind", KindPolicy}}
	if version != "" {
		m = append(m, kv{"version", version})
	}
	return append(m, policyFields(p, true)...)
}

func policyFields(p Policy, withScope bool) yamlMap {
	var m yamlMap
	if p.Name != "" {
		m = append(m, kv{"name", p.Name})
	}
	if withScope {
		m = append(m, kv{"scope", p.Scope})
	}
	m = append(m, kv{"consumer", p.Consumer}, kv{"provider", p.Provider}, kv{"action", p.Action.String()})
	if len(p.Ports) > 0 {
		m = append(m, kv{"ports", flowList(p.Ports)})
	}
	m = append(m, kv{"class", p.Class.String()})
	if p.Priority != 0 {
		m = append(m, kv{"priority", p.Priority})
	}
	if p.Direction != Both {
		m = append(m, kv{"direction", p.Direction.String()})
	}
	return m
}

// VersionDoc is the YAML form of a version.
func VersionDoc(v *Version) any {
	m := yamlMap{{"kind", KindPolicyVersion}, {"scope", v.Scope}, {"version", v.Name}}
	if v.CatchAll != NoAction {
		m = append(m, kv{"catchAll", v.CatchAll.String()})
	}
	if v.Source != "" {
		m = append(m, kv{"source", v.Source})
	}
	ps := make([]yamlMap, len(v.Policies))
	for i, p := range v.Policies {
		ps[i] = policyFields(p, false)
	}
	return append(m, kv{"policies", ps})
}

// FilterDoc is the YAML form of a named inventory filter.
func FilterDoc(f NamedFilter) any {
	m := yamlMap{{"kind", KindInventoryFilter}, {"name", f.Name}, {"filter", f.Filter}}
	if f.Description != "" {
		m = append(m, kv{"description", f.Description})
	}
	return m
}

type kv struct {
	k string
	v any
}

// yamlMap is an ordered mapping.
type yamlMap []kv

func (m yamlMap) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range m {
		v, err := valueNode(e.v)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: e.k}, v)
	}
	return n, nil
}

var yaml11Bool = map[string]bool{"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true}

// valueNode is v as a YAML node. Strings and the documents' own nodes are
// built directly: Node.Encode writes a value out and parses it back, which
// made writing a large discovered policy take ~0.2 ms per intent; the
// encoder quotes a string node as Encode would.
func valueNode(v any) (*yaml.Node, error) {
	switch x := v.(type) {
	case string:
		if !yaml11Bool[x] { // which Encode quotes and the node encoder does not
			n := &yaml.Node{}
			n.SetString(x)
			return n, nil
		}
	case yaml.Marshaler:
		if r, err := x.MarshalYAML(); err != nil {
			return nil, err
		} else if n, ok := r.(*yaml.Node); ok {
			return n, nil
		}
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return n, nil
}

// flowList is a list of strings written inline: ["tcp/80", "udp/53"].
type flowList []string

func (l flowList) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range l {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s, Style: yaml.DoubleQuotedStyle})
	}
	return n, nil
}
