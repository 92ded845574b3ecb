package rules

import (
	"reflect"
	"strings"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// The types below are rules.yaml as written. The checker in decode.go walks
// them by their yaml tags to report unknown keys and wrong types with
// positions, yaml.v3 fills them, and compile.go turns them into rules.
// rules.schema.json describes the same shape; schema_test.go keeps the two
// in step.

// fileSpec is the whole file.
type fileSpec struct {
	KfAccount string      `yaml:"kf_account"`
	Rules     []ruleSpec  `yaml:"rules"`
	Default   *answerSpec `yaml:"default"`
	Menu      *menuSpec   `yaml:"menu"`     // the custom menu (menu.go)
	Timezone  string      `yaml:"timezone"` // of `time:` match keys (timeofday.go)
}

// ruleSpec is one entry of rules.
type ruleSpec struct {
	Name     string     `yaml:"name"`
	Match    *matchSpec `yaml:"match"`
	Continue bool       `yaml:"continue"`
	Answer   answerSpec `yaml:",inline"`
	// SetState and ClearState change the sender's conversation state
	// (state.go).
	SetState   *setStateSpec `yaml:"set_state"`
	ClearState bool          `yaml:"clear_state"`
}

// answerSpec is what a rule, or the default, answers with.
type answerSpec struct {
	Pick    string      `yaml:"pick"`
	Passive bool        `yaml:"passive"`
	Reply   []replySpec `yaml:"reply"`
	// Fallback is sent instead of a webhook item that fails (webhook.go).
	Fallback []replySpec `yaml:"fallback"`
}

// matchSpec holds the match keys; all given keys must hold.
type matchSpec struct {
	MsgType  stringList `yaml:"msgtype"`
	Event    stringList `yaml:"event"`
	EventKey stringList `yaml:"event_key"`
	Scene    stringList `yaml:"scene"`
	Text     *textSpec  `yaml:"text"`
	MenuID   stringList `yaml:"menu_id"`
	Status   stringList `yaml:"status"`
	From     stringList `yaml:"from"`
	Time     *timeSpec  `yaml:"time"`  // weekdays and hours (timeofday.go)
	State    stringList `yaml:"state"` // the sender's conversation state (state.go)
}

// textSpec holds the text match keys; all given keys must hold.
type textSpec struct {
	Equals   stringList `yaml:"equals"`
	Contains stringList `yaml:"contains"`
	Prefix   stringList `yaml:"prefix"`
	Regex    stringList `yaml:"regex"`
}

// stringList is one string or a list of strings: `event: subscribe` and
// `event: [subscribe, SCAN]` both work, and a list means any of.
type stringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars. The checker has
// already reported any other shape, so nothing is returned for it here.
func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!null" {
			*l = stringList{n.Value}
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			if e = resolveAlias(e); e.Kind == yaml.ScalarNode {
				*l = append(*l, e.Value)
			}
		}
	}
	return nil
}

// templateKey is the reply item key of a template message.
const templateKey = "template"

// replySpec is one reply item: a mapping with one key, the msgtype, whose
// value is that payload exactly as message/custom/send takes it; or
// `template`, a template message. `text: "hi"` is short for
// `text: {content: "hi"}`.
type replySpec struct {
	Key      string
	Custom   *wechat.CustomMessage
	Template *wechat.TemplateMessage
	Webhook  *webhookSpec                    // webhook: the operator's service answers
	Transfer *wechat.TransferCustomerService // transfer_customer_service: passive only
}

// UnmarshalYAML decodes the item into the wechat types. Shapes the checker
// reported are left empty, and it never fails: yaml.v3 drops from a list
// an item whose UnmarshalYAML fails, which would shift the items after it
// and pin their problems on the wrong lines. What decoding would complain
// of, the checker has reported.
func (r *replySpec) UnmarshalYAML(n *yaml.Node) error {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return nil
	}
	key, value := n.Content[0].Value, resolveAlias(n.Content[1])
	r.Key = key
	switch key {
	case webhookKey:
		r.Webhook = new(webhookSpec)
		_ = value.Decode(r.Webhook)
		return nil
	case transferKey:
		r.Transfer = new(wechat.TransferCustomerService)
		if !isNull(value) {
			_ = value.Decode(r.Transfer)
		}
		return nil
	}
	if key == templateKey {
		r.Template = new(wechat.TemplateMessage)
		_ = value.Decode(r.Template)
		return nil
	}
	field, ok := payloadFields[key]
	if !ok {
		return nil
	}
	r.Custom = &wechat.CustomMessage{MsgType: key}
	if key == wechat.MsgTypeText && value.Kind == yaml.ScalarNode {
		r.Custom.Text = &wechat.Text{Content: value.Value}
		if value.Tag == "!!null" {
			r.Custom.Text.Content = ""
		}
		return nil
	}
	payload := reflect.New(field.Type.Elem())
	_ = value.Decode(payload.Interface())
	reflect.ValueOf(r.Custom).Elem().FieldByIndex(field.Index).Set(payload)
	return nil
}

// payloadFields maps each customer-service reply item key to its
// wechat.CustomMessage field. It is read from the yaml tags once, so that a
// payload type added to wechat is a reply item at once, and never changed.
var payloadFields = customPayloads()

func customPayloads() map[string]reflect.StructField {
	t := reflect.TypeFor[wechat.CustomMessage]()
	out := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" || f.Type.Kind() != reflect.Pointer {
			continue
		}
		out[name] = f
	}
	return out
}

// yamlName is the key of f in YAML, "" when it has none.
func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}
