package netpol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"
)

// Limits on a file, so a hostile one fails with an error instead of
// exhausting memory.
const (
	MaxFileSize = 16 << 20 // bytes
	MaxPolicies = 10000    // NetworkPolicies in one import
)

// Pos is a place in a source file.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Error is a problem with one NetworkPolicy document: where it is, the
// field at fault (a path such as spec.ingress[0].ports[1].endPort) and why.
type Error struct {
	Pos   Pos
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Field, e.Msg)
}

// Source is one NetworkPolicy read from a file, with the position of each
// of its fields so validation can name the line at fault.
type Source struct {
	Policy *networkingv1.NetworkPolicy
	Pos    Pos            // the document's (or list item's) first line
	fields map[string]Pos // field path → position of its value
}

// At returns the position of a field path of the policy (the nearest
// enclosing field's when the path itself was not written, e.g. a default).
func (s *Source) At(path string) Pos {
	for path != "" {
		if p, ok := s.fields[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return s.Pos
}

// Skipped is a document of another kind found beside NetworkPolicies (a
// Deployment in the same manifest): not imported, reported.
type Skipped struct {
	Pos        Pos
	APIVersion string
	Kind       string
	Name       string
}

// Decode reads the NetworkPolicies of a YAML or JSON file: one or more
// documents separated by `---`, each a networking.k8s.io/v1 NetworkPolicy,
// a NetworkPolicyList or a List of them (as `kubectl get -o yaml` prints).
// Documents of other kinds are returned as skipped. Decoding is strict:
// an unknown field, a value of the wrong type or a duplicate key is an
// *Error naming file:line:column and the field. A policy without a
// namespace gets defaultNamespace ("default" if empty), as kubectl does.
// Decode does not validate; Validate does.
func Decode(file string, data []byte, defaultNamespace string) ([]*Source, []Skipped, error) {
	if len(data) > MaxFileSize {
		return nil, nil, &Error{Pos: Pos{File: file}, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	if defaultNamespace == "" {
		defaultNamespace = "default"
	}
	var out []*Source
	var skipped []Skipped
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, yamlError(file, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue // an empty document
		}
		d := &decoder{file: file}
		srcs, skip, err := d.object(root, "")
		if err != nil {
			return nil, nil, err
		}
		skipped = append(skipped, skip...)
		for _, s := range srcs {
			if s.Policy.Namespace == "" {
				s.Policy.Namespace = defaultNamespace
			}
			out = append(out, s)
		}
		if len(out) > MaxPolicies {
			return nil, nil, &Error{Pos: Pos{File: file}, Msg: fmt.Sprintf("more than %d NetworkPolicies", MaxPolicies)}
		}
	}
	return out, skipped, nil
}

// yamlError turns the YAML parser's "yaml: line N: msg" into file:line.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &Error{Pos: Pos{File: file, Line: line, Column: 1}, Msg: "invalid YAML: " + msg}
}

type decoder struct {
	file   string
	fields map[string]Pos
}

func (d *decoder) pos(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Column: n.Column} }

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &Error{Pos: d.pos(n), Field: path, Msg: fmt.Sprintf(format, args...)}
}

// object decodes one document or list item: a NetworkPolicy, a list of
// them, or something else (skipped).
func (d *decoder) object(n *yaml.Node, path string) ([]*Source, []Skipped, error) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, nil, d.errf(n, path, "expected a Kubernetes object (a mapping), got %s", describe(n))
	}
	get := func(key string) string {
		if v := lookup(n, key); v != nil && v.Kind == yaml.ScalarNode {
			return v.Value
		}
		return ""
	}
	apiVersion, kind := get("apiVersion"), get("kind")
	field := func(f string) string {
		if path == "" {
			return f
		}
		return path + "." + f
	}
	switch kind {
	case "NetworkPolicy":
		if apiVersion != "networking.k8s.io/v1" {
			at := lookup(n, "apiVersion")
			if at == nil {
				at = n
			}
			return nil, nil, d.errf(at, field("apiVersion"), "NetworkPolicy must be networking.k8s.io/v1, got %q", apiVersion)
		}
		d.fields = map[string]Pos{}
		var np networkingv1.NetworkPolicy
		if err := d.value(n, reflect.ValueOf(&np).Elem(), ""); err != nil {
			if e, ok := err.(*Error); ok && path != "" {
				e.Field = strings.TrimSuffix(path+"."+e.Field, ".")
			}
			return nil, nil, err
		}
		return []*Source{{Policy: &np, Pos: d.pos(n), fields: d.fields}}, nil, nil
	case "NetworkPolicyList", "List":
		items := lookup(n, "items")
		if items == nil {
			return nil, nil, nil
		}
		items = resolve(items)
		if items.Kind != yaml.SequenceNode {
			if items.Tag == "!!null" {
				return nil, nil, nil
			}
			return nil, nil, d.errf(items, field("items"), "expected a list, got %s", describe(items))
		}
		for i := 0; i < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "apiVersion", "kind", "items", "metadata":
			default:
				return nil, nil, d.errf(n.Content[i], field(k), "unknown field")
			}
		}
		var out []*Source
		var skipped []Skipped
		for i, it := range items.Content {
			srcs, skip, err := d.object(it, fmt.Sprintf("%s[%d]", field("items"), i))
			if err != nil {
				return nil, nil, err
			}
			out, skipped = append(out, srcs...), append(skipped, skip...)
		}
		return out, skipped, nil
	case "":
		return nil, nil, d.errf(n, field("kind"), "missing: every document needs apiVersion and kind (kind: NetworkPolicy)")
	}
	name := ""
	if m := lookup(n, "metadata"); m != nil {
		if v := lookup(resolve(m), "name"); v != nil {
			name = v.Value
		}
	}
	return nil, []Skipped{{Pos: d.pos(n), APIVersion: apiVersion, Kind: kind, Name: name}}, nil
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// value decodes n into v, strictly, following the json tags of the
// Kubernetes API types; path is the field path of v.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) error {
	n = resolve(n)
	if n == nil {
		return nil
	}
	if path != "" {
		d.fields[path] = d.pos(n)
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	if v.Kind() == reflect.Pointer {
		if isNull {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.value(n, v.Elem(), path)
	}
	// Types with their own JSON form (intstr.IntOrString, metav1.Time,
	// resource.Quantity, metav1.FieldsV1): decode through JSON.
	if v.CanAddr() && v.Addr().Type().Implements(jsonUnmarshaler) {
		var generic any
		if err := n.Decode(&generic); err != nil {
			return d.errf(n, path, "%v", err)
		}
		b, err := json.Marshal(generic)
		if err != nil {
			return d.errf(n, path, "%v", err)
		}
		if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
			return d.errf(n, path, "invalid value %s: %v", strings.TrimSpace(n.Value), err)
		}
		return nil
	}
	if isNull {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "expected a mapping, got %s", describe(n))
		}
		fields := structFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			if seen[k.Value] {
				return d.errf(k, fp, "duplicate key")
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				return d.errf(k, fp, "unknown field")
			}
			d.fields[fp] = d.pos(k)
			if err := d.value(val, v.FieldByIndex(idx), fp); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "expected a mapping, got %s", describe(n))
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			key := reflect.New(v.Type().Key()).Elem()
			if err := d.value(k, key, fp); err != nil {
				return err
			}
			if m.MapIndex(key).IsValid() {
				return d.errf(k, fp, "duplicate key")
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.value(val, elem, fp); err != nil {
				return err
			}
			m.SetMapIndex(key, elem)
		}
		v.Set(m)
		return nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // []byte: base64 in JSON
			if n.Kind != yaml.ScalarNode {
				return d.errf(n, path, "expected a base64 string, got %s", describe(n))
			}
			return d.viaJSON(n, v, path)
		}
		if n.Kind != yaml.SequenceNode {
			return d.errf(n, path, "expected a list, got %s", describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			return d.errf(n, path, "expected a string, got %s (quote it)", describe(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return d.errf(n, path, "expected true or false, got %s", describe(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.errf(n, path, "%v", err)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return d.errf(n, path, "expected an integer, got %s", describe(n))
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			return d.errf(n, path, "integer %s out of range", n.Value)
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return d.errf(n, path, "expected an integer, got %s", describe(n))
		}
		var u uint64
		if err := n.Decode(&u); err != nil || v.OverflowUint(u) {
			return d.errf(n, path, "integer %s out of range", n.Value)
		}
		v.SetUint(u)
		return nil
	case reflect.Interface:
		return d.viaJSON(n, v, path)
	}
	return d.errf(n, path, "cannot decode into %s", v.Type())
}

func (d *decoder) viaJSON(n *yaml.Node, v reflect.Value, path string) error {
	var generic any
	if err := n.Decode(&generic); err != nil {
		return d.errf(n, path, "%v", err)
	}
	b, err := json.Marshal(generic)
	if err != nil {
		return d.errf(n, path, "%v", err)
	}
	if err := json.Unmarshal(b, v.Addr().Interface()); err != nil {
		return d.errf(n, path, "%v", err)
	}
	return nil
}

// structFields maps the JSON names of t's fields (inline embedded structs
// flattened) to their index paths.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the number " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}
