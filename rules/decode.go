package rules

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// checker walks the YAML node tree beside the Go type it will decode into
// and reports, with positions, what yaml.v3 would ignore or report without
// a column: unknown keys, duplicate keys, wrong shapes. It also remembers
// the node of every path ("rules[2].reply[0].text.content") so that the
// checks after decoding can point at the right line.
type checker struct {
	*problems
	nodes  map[string]*yaml.Node
	fields map[reflect.Type]*structFields
	// visits counts nodes walked, aliases expanded; past budget the walk
	// stops: aliases can make a small document expand enormously ("billion
	// laughs"), and reusing a reply through an alias never needs that.
	visits, budget int
	exhausted      bool
}

// structFields is the key set of a struct type, inline fields flattened.
type structFields struct {
	byName map[string]reflect.Type
	names  []string // in declaration order, for messages
}

var (
	stringListType = reflect.TypeFor[stringList]()
	replySpecType  = reflect.TypeFor[replySpec]()
)

func newChecker(p *problems, root *yaml.Node) *checker {
	return &checker{
		problems: p,
		nodes:    make(map[string]*yaml.Node),
		fields:   make(map[reflect.Type]*structFields),
		budget:   100_000 + 10*countNodes(root),
	}
}

// countNodes counts the nodes of the document as written, aliases not
// followed.
func countNodes(n *yaml.Node) int {
	count := 1
	for _, c := range n.Content {
		count += countNodes(c)
	}
	return count
}

// node returns the node recorded for path, or for its nearest recorded
// parent, so that a missing field is reported at its parent.
func (c *checker) node(path string) *yaml.Node {
	for {
		if n, ok := c.nodes[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return c.nodes[""]
		}
		path = path[:i]
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// check walks n as a value of type t at path.
func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	if c.visits++; c.visits > c.budget {
		if !c.exhausted {
			c.exhausted = true
			c.add(n, path, true, "the document expands too much through aliases; stopped checking here")
		}
		return
	}
	n = resolveAlias(n)
	c.nodes[path] = n
	if isNull(n) {
		// `key:` with nothing after it. For most keys that is the key
		// absent, and the checks after decoding say when it is required;
		// these would silently mean something else than what was meant.
		if what, refused := nullRefused[t]; refused {
			c.add(n, path, true, "no value: %s", what)
		}
		return
	}
	switch {
	case t == stringListType:
		c.checkStringList(n, path)
		return
	case t == replySpecType:
		c.checkReply(n, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.check(n, t.Elem(), path)
	case reflect.Struct:
		want := "a mapping with the keys " + strings.Join(c.structFields(t).names, ", ")
		if c.expect(n, yaml.MappingNode, path, want) {
			c.checkStruct(n, t, path)
		}
	case reflect.Slice:
		if c.expect(n, yaml.SequenceNode, path, "a list") {
			for i, e := range n.Content {
				if isNull(resolveAlias(e)) {
					c.emptyItem(n, i, path)
					continue
				}
				c.check(e, t.Elem(), indexPath(path, i))
				if wantsMapping(t.Elem()) && resolveAlias(e).Kind != yaml.MappingNode {
					// Reported by check. yaml.v3 would drop the item when
					// decoding; keep its place, as for an empty item.
					n.Content[i] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: e.Line, Column: e.Column}
				}
			}
		}
	case reflect.Map:
		if c.expect(n, yaml.MappingNode, path, "a mapping") {
			c.checkMap(n, t, path)
		}
	case reflect.String:
		c.expect(n, yaml.ScalarNode, path, "a string")
	case reflect.Bool:
		var b bool
		if c.expect(n, yaml.ScalarNode, path, "true or false") && n.Decode(&b) != nil {
			c.add(n, path, true, "expected true or false, got %q", n.Value)
		}
	default:
		c.add(n, path, true, "internal error: no check for %s", t)
	}
}

// expect reports a shape mismatch; the problem corrupts the decoded value.
func (c *checker) expect(n *yaml.Node, kind yaml.Kind, path, want string) bool {
	if n.Kind == kind {
		return true
	}
	c.add(n, path, true, "expected %s, got %s", want, describe(n))
	return false
}

// nullRefused lists the types whose `key:` with no value is an error, and
// what to write instead: an empty match key would drop a condition (and
// widen the rule), an empty reply would turn a rule into one that only
// records, an empty default would be no default.
var nullRefused = map[reflect.Type]string{
	stringListType:                 "give one value or a list, or leave the key out",
	reflect.TypeFor[*textSpec]():   "give equals, contains, prefix or regex, or leave text out",
	reflect.TypeFor[[]replySpec](): "give the reply items, or leave reply out for a rule that only records a match",
	reflect.TypeFor[*answerSpec](): "give its reply, or leave default out",
	reflect.TypeFor[[]ruleSpec]():  "give the rules, or leave rules out",
	reflect.TypeFor[*menuSpec]():   "give its button list, or leave menu out",
	reflect.TypeFor[*timeSpec]():   "give days, hours or both, or leave time out",
}

// wantsMapping reports whether values of t are written as mappings.
func wantsMapping(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != stringListType
}

// emptyItem reports the i-th item of the list n, a `-` with nothing after
// it. yaml.v3 would drop it when decoding, which would shift the items
// after it and make every later problem point at the wrong item; an empty
// mapping in its place keeps the decoded list in step with the file.
func (c *checker) emptyItem(n *yaml.Node, i int, path string) {
	at := indexPath(path, i)
	e := resolveAlias(n.Content[i])
	c.nodes[at] = e
	c.add(e, at, true, "an empty list item: a `-` with nothing after it")
	n.Content[i] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: e.Line, Column: e.Column}
}

func (c *checker) checkStringList(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			c.add(n, path, true, "an empty list: give at least one value, or leave the key out")
		}
		for i, e := range n.Content {
			e = resolveAlias(e)
			c.nodes[indexPath(path, i)] = e
			if e.Kind != yaml.ScalarNode || isNull(e) {
				c.add(e, indexPath(path, i), true, "expected a string, got %s", describe(e))
			}
		}
	default:
		c.add(n, path, true, "expected a string or a list of strings, got %s", describe(n))
	}
}

// checkReply checks one reply item: a mapping with exactly one key, a
// msgtype or `template`.
func (c *checker) checkReply(n *yaml.Node, path string) {
	if !c.expect(n, yaml.MappingNode, path, "a reply item such as `text: hello` or `image: {media_id: ...}`") {
		return
	}
	if len(n.Content) == 0 {
		c.add(n, path, true, "an empty reply item: give its message type, as in `text: hello`")
		return
	}
	if len(n.Content) != 2 {
		var keys []string
		for i := 0; i < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		c.add(n, path, true, "a reply item has exactly one key, its message type; got %s: write each message as its own `- ` item",
			strings.Join(keys, ", "))
		return
	}
	keyNode, value := n.Content[0], resolveAlias(n.Content[1])
	key := keyNode.Value
	at := joinPath(path, key)
	switch field, ok := payloadFields[key]; {
	case key == templateKey:
		c.check(value, reflect.TypeFor[wechat.TemplateMessage](), at)
	case key == webhookKey:
		c.check(value, reflect.TypeFor[webhookSpec](), at)
	case key == transferKey:
		c.check(value, reflect.TypeFor[wechat.TransferCustomerService](), at) // `transfer_customer_service:` alone is fine
	case !ok:
		c.add(keyNode, path, true, "unknown reply type %q; want one of %s", key, replyKeys())
	case key == wechat.MsgTypeText && value.Kind == yaml.ScalarNode:
		c.nodes[at] = value
		c.nodes[at+".content"] = value
	default:
		c.check(value, field.Type, at)
	}
}

// replyKeys lists the reply item keys for messages.
func replyKeys() string {
	return strings.Join(wechat.CustomMsgTypes, ", ") + ", " + templateKey + ", " + webhookKey + ", " + transferKey
}

func (c *checker) checkStruct(n *yaml.Node, t reflect.Type, path string) {
	sf := c.structFields(t)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	var merges []*yaml.Node
	defer c.dropDuplicates(n, seen)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Value == "<<" && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if !c.newKey(k, seen, path) {
			continue
		}
		ft, ok := sf.byName[k.Value]
		if !ok {
			c.add(k, path, false, "unknown key %q; known keys: %s", k.Value, strings.Join(sf.names, ", "))
			continue
		}
		c.check(v, ft, joinPath(path, k.Value))
	}
	// YAML merge keys (<<: *anchor) fill in what the mapping does not set.
	for _, m := range merges {
		m = resolveAlias(m)
		sources := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		}
		for _, src := range sources {
			src = resolveAlias(src)
			if !c.expect(src, yaml.MappingNode, path, "a mapping to merge") {
				continue
			}
			for i := 0; i+1 < len(src.Content); i += 2 {
				k := src.Content[i]
				if _, explicit := seen[k.Value]; explicit {
					continue
				}
				seen[k.Value] = k
				ft, ok := sf.byName[k.Value]
				if !ok {
					c.add(k, path, false, "unknown key %q (merged); known keys: %s", k.Value, strings.Join(sf.names, ", "))
					continue
				}
				c.check(src.Content[i+1], ft, joinPath(path, k.Value))
			}
		}
	}
}

// newKey checks one key of a mapping: a string, not seen before in it. It
// records the key in seen and reports whether its value is to be checked.
// A duplicate key is reported without corrupting the mapping: the first
// value counts, and dropDuplicates takes the others out before decoding.
func (c *checker) newKey(k *yaml.Node, seen map[string]*yaml.Node, path string) bool {
	if k.Kind != yaml.ScalarNode {
		c.add(k, path, true, "keys must be strings, got %s", describe(k))
		return false
	}
	if first, dup := seen[k.Value]; dup {
		c.add(k, path, false, "duplicate key %q (first at line %d)", k.Value, first.Line)
		return false
	}
	seen[k.Value] = k
	return true
}

// dropDuplicates removes from the mapping n every key after the first of
// its name (seen holds the first), with its value. yaml.v3 refuses to
// decode a mapping with a duplicate key at all, which would leave the
// whole rule empty and hide every other problem in it.
func (c *checker) dropDuplicates(n *yaml.Node, seen map[string]*yaml.Node) {
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolveAlias(n.Content[i])
		if k.Kind == yaml.ScalarNode && !(k.Value == "<<" && k.Tag == "!!merge") && seen[k.Value] != nil && seen[k.Value] != k {
			continue
		}
		kept = append(kept, n.Content[i], n.Content[i+1])
	}
	if len(kept) != len(n.Content) {
		n.Content = kept
	}
}

func (c *checker) checkMap(n *yaml.Node, t reflect.Type, path string) {
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	defer c.dropDuplicates(n, seen)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolveAlias(n.Content[i])
		if !c.newKey(k, seen, path) {
			continue
		}
		c.check(n.Content[i+1], t.Elem(), joinPath(path, k.Value))
	}
}

// structFields returns t's yaml keys, inline fields flattened.
func (c *checker) structFields(t reflect.Type) *structFields {
	if sf, ok := c.fields[t]; ok {
		return sf
	}
	sf := &structFields{byName: make(map[string]reflect.Type)}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if strings.Contains(f.Tag.Get("yaml"), ",inline") {
				walk(f.Type)
				continue
			}
			if name := yamlName(f); name != "" {
				sf.byName[name] = f.Type
				sf.names = append(sf.names, name)
			}
		}
	}
	walk(t)
	c.fields[t] = sf
	return sf
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names a node's shape for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported node"
}

// sortedKeys returns the keys of m in order, for messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
