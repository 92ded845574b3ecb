package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// A webhook reply item asks the operator's own service for the replies at
// match time. The rules decide what to ask and check the answer with the
// same checker and validation as rules.yaml's own items; the server makes
// the call (server/webhook.go), inside the callback, so that the answer
// can be the passive reply and is recorded before WeChat gets its 200.

// Reply item keys besides the msgtypes and template.
const (
	webhookKey  = "webhook"
	transferKey = wechat.MsgTypeTransferCustomerService
)

// Webhook timeouts: the contract's default of 5 seconds, and no more. The
// call is made inside the callback, which WeChat gives 5 seconds: a
// webhook that takes all of them makes WeChat retry, and the retry, which
// finds the first copy under way, waits for its answer (handlers'
// in-flight dedupe) — so the user still gets one reply. A shorter timeout
// (the contract's example, 3s) answers within WeChat's first try.
const (
	DefaultWebhookTimeout = 5 * time.Second
	MaxWebhookTimeout     = 5 * time.Second
)

// MaxWebhookAnswer bounds the answer read from the service.
const MaxWebhookAnswer = 1 << 20

// webhookSpec is a webhook item as written.
type webhookSpec struct {
	URL     string `yaml:"url"`
	Timeout string `yaml:"timeout"`
}

// webhook is a compiled webhook item.
type webhook struct {
	url     string
	timeout time.Duration
}

func (c *compiler) compileWebhook(path string, spec *webhookSpec) *webhook {
	w := &webhook{url: strings.TrimSpace(spec.URL), timeout: DefaultWebhookTimeout}
	if at := path + ".url"; !c.corruptAt(at) {
		u, err := url.Parse(w.url)
		switch {
		case w.url == "":
			c.add(c.node(at), at, false, "a webhook needs its url")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			c.add(c.node(at), at, false, "want an absolute http:// or https:// URL, got %q", spec.URL)
		}
	}
	if at := path + ".timeout"; spec.Timeout != "" && !c.corruptAt(at) {
		d, err := time.ParseDuration(strings.TrimSpace(spec.Timeout))
		switch {
		case err != nil:
			c.add(c.node(at), at, false, "want a duration such as 3s or 500ms, got %q", spec.Timeout)
		case d <= 0:
			c.add(c.node(at), at, false, "must be more than 0")
		case d > MaxWebhookTimeout:
			c.add(c.node(at), at, false, "at most %s: the call is made inside WeChat's 5 seconds", MaxWebhookTimeout)
		default:
			w.timeout = d
		}
	}
	if !c.webhookWarned {
		c.webhookWarned = true
		c.warn(c.node(path), path, "webhook requests are signed with WXREPLY_WEBHOOK_SECRET: the server refuses to start without it")
	}
	return w
}

// checkTransfers refuses a hand-over that cannot be the passive answer.
func (c *compiler) checkTransfers(path string, spec *answerSpec) {
	for j, r := range spec.Reply {
		if r.Transfer == nil || (spec.Passive && (j == 0 || spec.Pick == "random")) {
			continue
		}
		at := indexPath(joinPath(path, "reply"), j)
		c.add(c.node(at), at, false,
			"transfer_customer_service is a passive reply only: give the rule `passive: true` and make it the first reply item")
	}
}

// compileFallback compiles what is sent in place of a failed webhook.
func (c *compiler) compileFallback(path string, spec *answerSpec, groups int) []*item {
	fpath := joinPath(path, "fallback")
	if len(spec.Fallback) == 0 || c.broken(fpath) {
		return nil
	}
	if !slices.ContainsFunc(spec.Reply, func(r replySpec) bool { return r.Webhook != nil }) && !c.corruptAt(joinPath(path, "reply")) {
		c.add(c.node(fpath), fpath, false, "is sent only when a webhook reply item fails, and the reply has none")
	}
	// When the webhook is the passive answer, the fallback's first item
	// is: it must be one.
	passive := spec.Passive && (spec.Pick == "random" || len(spec.Reply) > 0 && spec.Reply[0].Webhook != nil)
	var items []*item
	for j := range spec.Fallback {
		at := indexPath(fpath, j)
		if c.corruptAt(at) {
			continue
		}
		r := &spec.Fallback[j]
		switch {
		case r.Webhook != nil:
			c.add(c.node(at), at, false, "a fallback cannot call a webhook")
			continue
		case r.Transfer != nil && !(passive && j == 0):
			c.add(c.node(at), at, false,
				"transfer_customer_service in a fallback is passive only: the first fallback item of a `passive: true` rule whose first reply item is the webhook")
			continue
		case passive && j == 0 && r.Transfer == nil && (r.Template != nil || r.Custom != nil && !wechat.IsPassiveType(r.Custom.MsgType)):
			c.add(c.node(at), at, false, "answers in place of the passive webhook: a passive reply is text, image, voice, video, music, news or transfer_customer_service, not %s", r.Key)
		}
		if it := c.compileItem(at, r, groups); it != nil {
			items = append(items, it)
		}
	}
	return items
}

// WebhookRules names the rules (and "default") with a webhook item, in
// file order; the server needs WXREPLY_WEBHOOK_SECRET when there is one.
func (s *Set) WebhookRules() []string {
	var names []string
	for _, r := range append(slices.Clip(s.rules), s.def) {
		if r != nil && slices.ContainsFunc(r.items, func(it *item) bool { return it.webhook != nil }) {
			names = append(names, r.name)
		}
	}
	return names
}

// WebhookCall is one webhook item to call for one message. Call the URL
// with Body (server/webhook.go signs and sends it), then pass the answer
// to Answer; on any failure use Fallback.
type WebhookCall struct {
	Rule    string
	URL     string
	Timeout time.Duration
	// At is where the items go in Decision.Replies: the index of the
	// first reply after the webhook item, before any other call's items.
	At int
	// Passive says the first item answered is the passive reply.
	Passive bool
	// Body is the request: {"rule", "groups", "message"}.
	Body []byte

	toUser, inMsgID, kf string
	fallback            []*item
	data                *TemplateData
	log                 *slog.Logger
}

// Replies are what a webhook call (or its fallback) answers with.
type Replies struct {
	Passive  *wechat.CustomMessage           // the passive reply, when the call has it
	Transfer *wechat.TransferCustomerService // or the hand-over
	Items    []wechat.Outgoing               // sent through the API, in order
}

func (s *Set) webhookCall(r *rule, w *webhook, data *TemplateData, inMsgID string, at int, passive bool) *WebhookCall {
	groups := data.Groups
	if groups == nil {
		groups = []string{}
	}
	body, err := json.Marshal(struct {
		Rule    string         `json:"rule"`
		Groups  []string       `json:"groups"`
		Message map[string]any `json:"message"`
	}{r.name, groups, messageFields(data.Message)})
	if err != nil { // strings and numbers only: cannot happen
		s.log.Error("webhook request not encoded", "rule", r.name, "error", err)
	}
	return &WebhookCall{
		Rule: r.name, URL: w.url, Timeout: w.timeout, At: at, Passive: passive, Body: body,
		toUser: data.Message.FromUserName, inMsgID: inMsgID, kf: s.kf,
		fallback: r.fallback, data: data, log: s.log,
	}
}

// webhookAnswer is the service's answer as written.
type webhookAnswer struct {
	Reply []replySpec `yaml:"reply"`
}

// Answer checks the service's answer, {"reply": [ITEM, ...]}, with the
// checker and validation of rules.yaml's reply items, and returns its
// items addressed to the user. Items are taken literally (no templates)
// and may not name local files nor call webhooks. An error lists every
// problem as LINE:COL: path: message.
func (w *WebhookCall) Answer(body []byte) (Replies, error) {
	if !json.Valid(body) {
		return Replies{}, errors.New(`the answer is not JSON; want {"reply": [ITEM, ...]}`)
	}
	body, err := asYAML(body)
	if err != nil {
		return Replies{}, fmt.Errorf("the answer does not parse: %v", err)
	}
	p := &problems{file: "answer"}
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil || len(doc.Content) != 1 {
		return Replies{}, fmt.Errorf("the answer does not parse: %v", err)
	}
	root := doc.Content[0]
	c := &compiler{checker: newChecker(p, root), names: map[string]*yaml.Node{}}
	c.check(root, reflect.TypeFor[webhookAnswer](), "")
	var ans webhookAnswer
	if c.nodes["reply"] == nil && len(p.list) == 0 {
		p.add(root, "", false, `no reply: want {"reply": [ITEM, ...]}`)
	}
	if len(p.list) == 0 {
		_ = root.Decode(&ans)
	}
	for j := range ans.Reply {
		at := indexPath("reply", j)
		if c.corruptAt(at) {
			continue
		}
		r := &ans.Reply[j]
		first := w.Passive && j == 0
		switch {
		case r.Webhook != nil:
			c.add(c.node(at), at, false, "a webhook's answer cannot call a webhook")
		case r.Transfer != nil && !first:
			c.add(c.node(at), at, false, "transfer_customer_service is passive only: the first item answered for a `passive: true` rule")
		case r.Template != nil:
			c.fieldProblems(at+"."+templateKey+".", r.Template.Validate())
		case r.Custom != nil:
			if first && !wechat.IsPassiveType(r.Custom.MsgType) {
				c.add(c.node(at), at, false, "the passive reply is text, image, voice, video, music, news or transfer_customer_service, not %s", r.Key)
			}
			visitFiles(r.Custom, func(path string, s *string) {
				if *s != "" {
					c.add(c.node(at+"."+path), at+"."+path, false, "a webhook's item cannot name a local file: give a media_id")
				}
			})
			c.fieldProblems(at+".", r.Custom.Validate())
		}
	}
	if len(p.list) > 0 {
		msgs := make([]string, len(p.list))
		for i, pr := range p.list {
			msgs[i] = fmt.Sprintf("%d:%d: %s", pr.Line, pr.Col, pr.Msg)
		}
		return Replies{}, errors.New(strings.Join(msgs, "; "))
	}
	var out Replies
	for j := range ans.Reply {
		r := &ans.Reply[j]
		out.add(w, j == 0, r.Custom, r.Template, r.Transfer)
	}
	return out, nil
}

// Fallback renders the rule's fallback items, addressed to the user; a
// rule without one answers nothing.
func (w *WebhookCall) Fallback() Replies {
	var out Replies
	for k, it := range w.fallback {
		if it.transfer != nil {
			out.add(w, k == 0, nil, nil, it.transfer)
			continue
		}
		custom, tmpl, err := it.render(w.data)
		if err != nil {
			w.log.Error("fallback reply skipped", "rule", w.Rule, "openid", w.toUser, "msg_id", w.inMsgID, "item", k, "error", err)
			continue
		}
		out.add(w, k == 0, custom, tmpl, nil)
	}
	return out
}

func (out *Replies) add(w *WebhookCall, first bool, custom *wechat.CustomMessage, tmpl *wechat.TemplateMessage, transfer *wechat.TransferCustomerService) {
	switch {
	case transfer != nil:
		if first && w.Passive {
			t := *transfer
			out.Transfer = &t
		}
		return
	case custom != nil:
		custom.ToUser = w.toUser
		if first && w.Passive {
			out.Passive = custom
			return
		}
		if w.kf != "" {
			custom.CustomService = &wechat.CustomService{KfAccount: w.kf}
		}
	case tmpl != nil:
		tmpl.ToUser = w.toUser
	default:
		return
	}
	out.Items = append(out.Items, wechat.Outgoing{Rule: w.Rule, InMsgID: w.inMsgID, Custom: custom, Template: tmpl})
}

// asYAML rewrites a JSON document so that yaml.v3 reads it as JSON
// means it: the same values, keys in the same order, on one line, with
// the escapes yaml.v3 does not take (\/, and the surrogate pairs that
// encode characters beyond U+FFFF, as Python's json.dumps writes emoji)
// written as UTF-8. Positions in problems are of this line.
func asYAML(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	type frame struct {
		object bool
		n      int // tokens written in it
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
			continue
		}
		if len(stack) > 0 {
			f := &stack[len(stack)-1]
			switch {
			case f.n == 0:
			case f.object && f.n%2 == 1:
				out.WriteString(": ")
			default:
				out.WriteString(", ")
			}
			f.n++
		}
		switch v := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(v))
			stack = append(stack, frame{object: v == '{'})
		case string:
			b, _ := json.Marshal(v) // \uXXXX only within the BMP, which yaml.v3 takes
			out.Write(b)
		case json.Number:
			out.WriteString(v.String())
		case bool:
			out.WriteString(strconv.FormatBool(v))
		case nil:
			out.WriteString("null")
		}
	}
}

// messageFields is the inbound message under its XML tag names, empty
// fields left out, unknown tags included as text.
func messageFields(m *wechat.Message) map[string]any {
	out := map[string]any{}
	if m == nil {
		return out
	}
	v := reflect.ValueOf(m).Elem()
	for name, val := range xmlFields(v) {
		if name != "Encrypt" {
			out[name] = val
		}
	}
	for _, u := range m.Unknown {
		if _, ok := out[u.XMLName.Local]; !ok && u.XMLName.Local != "" {
			out[u.XMLName.Local] = u.Value
		}
	}
	return out
}

// xmlFields maps the set fields of struct v by their xml tag names.
func xmlFields(v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("xml"), ",")
		name, _, _ := strings.Cut(tag, ">")
		if name == "" || name == "-" || !f.IsExported() || f.Name == "XMLName" {
			continue
		}
		if val, ok := xmlValue(v.Field(i)); ok {
			out[name] = val
		}
	}
	return out
}

func xmlValue(fv reflect.Value) (any, bool) {
	if fv.IsZero() {
		return nil, false
	}
	switch fv.Kind() {
	case reflect.Pointer:
		return xmlValue(fv.Elem())
	case reflect.Struct:
		return xmlFields(fv), true
	case reflect.Slice:
		list := make([]any, 0, fv.Len())
		for i := range fv.Len() {
			if e, ok := xmlValue(fv.Index(i)); ok {
				list = append(list, e)
			} else {
				list = append(list, map[string]any{})
			}
		}
		return list, true
	}
	return fv.Interface(), true
}
