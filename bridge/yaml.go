package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxConfigSize bounds the YAML documents ParseConfigs reads.
const MaxConfigSize = 1 << 20

// ParseConfigs decodes YAML bridges strictly and validates them with
// [ValidateAll]. The document is either a sequence of bridges or a mapping
// with the single key "bridges" (the section of "mqttsec serve"'s file):
//
//	bridges:
//	  - name: cloud
//	    remote: "mqtts://broker.example.com:8883"
//	    ...
//
// Unknown keys are errors, as are duplicate keys, values of the wrong type
// and anything Validate refuses; each error names the bridge and its line.
func ParseConfigs(data []byte) ([]Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%w: document larger than %d bytes", ErrInvalid, MaxConfigSize)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no bridges", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: one YAML document expected", ErrInvalid)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.MappingNode {
		var list *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			k := root.Content[i]
			if k.Value != "bridges" {
				return nil, fmt.Errorf("%w: line %d: unknown key %q (want bridges)", ErrInvalid, k.Line, k.Value)
			}
			list = root.Content[i+1]
		}
		if list == nil {
			return nil, fmt.Errorf("%w: no bridges", ErrInvalid)
		}
		root = list
	}
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%w: line %d: want a list of bridges", ErrInvalid, root.Line)
	}
	var cfgs []Config
	if err := root.Decode(&cfgs); err != nil {
		return nil, unwrapYAML(err)
	}
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("%w: no bridges", ErrInvalid)
	}
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	return cfgs, nil
}

// unwrapYAML returns the bridge's own error when yaml.v3 passed it
// through unchanged, and wraps anything else in ErrInvalid.
func unwrapYAML(err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

// UnmarshalYAML decodes a bridge strictly whatever decoder calls it: unknown
// and misspelled keys (in the bridge, its tls section and its topics) are
// errors naming the bridge and the line, as are values of the wrong type.
// It does not validate; call [Config.Validate] or [ValidateAll].
func (c *Config) UnmarshalYAML(value *yaml.Node) error {
	name := nodeName(value)
	if value.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: line %d: a bridge is a mapping", ErrInvalid, value.Line)
	}
	if err := checkKeys(value, reflect.TypeFor[Config](), map[*yaml.Node]bool{}); err != nil {
		return fmt.Errorf("%w: bridge %q: %v", ErrInvalid, name, err)
	}
	type plain Config
	var p plain
	if err := value.Decode(&p); err != nil {
		return fmt.Errorf("%w: bridge %q: %v", ErrInvalid, name, err)
	}
	*c = Config(p)
	c.line = value.Line
	return nil
}

// nodeName returns the scalar value of the "name" key of a mapping node, or
// "line N" when there is none.
func nodeName(n *yaml.Node) string {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
				return n.Content[i+1].Value
			}
		}
	}
	return fmt.Sprintf("line %d", n.Line)
}

var keysCache sync.Map // reflect.Type -> map[string]reflect.Type

// yamlKeys returns the keys a struct type accepts, with their field types.
func yamlKeys(t reflect.Type) map[string]reflect.Type {
	if m, ok := keysCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		key, _, _ := strings.Cut(tag, ",")
		if key == "" {
			key = strings.ToLower(f.Name)
		}
		m[key] = f.Type
	}
	keysCache.Store(t, m)
	return m
}

// checkKeys reports the first key of a mapping node that the struct type t
// does not accept, recursing into nested structs and lists of structs.
// Aliases are followed once.
func checkKeys(n *yaml.Node, t reflect.Type, seen map[*yaml.Node]bool) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if seen[n] {
		return nil
	}
	seen[n] = true
	switch {
	case t.Kind() == reflect.Struct && t.String() != "time.Time":
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports the type error
		}
		keys := yamlKeys(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				if err := checkMerge(v, t, seen); err != nil {
					return err
				}
				continue
			}
			ft, ok := keys[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q in %s", k.Line, k.Value, typeLabel(t))
			}
			if err := checkKeys(v, ft, seen); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for _, e := range n.Content {
			if err := checkKeys(e, t.Elem(), seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkMerge(v *yaml.Node, t reflect.Type, seen map[*yaml.Node]bool) error {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			if err := checkKeys(e, t, seen); err != nil {
				return err
			}
		}
		return nil
	}
	return checkKeys(v, t, seen)
}

func typeLabel(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Config]():
		return "the bridge"
	case reflect.TypeFor[Mapping]():
		return "a topic mapping"
	}
	if t.Name() == "Config" && strings.HasSuffix(t.PkgPath(), "/tlsconf") {
		return "tls"
	}
	return t.String()
}
