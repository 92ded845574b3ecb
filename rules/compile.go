package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// compiler turns the decoded file into rules, reporting every problem at
// the position the checker recorded for it.
type compiler struct {
	*checker
	dir   string                // the rules file's directory, absolute
	names map[string]*yaml.Node // rule name → its first definition
	caps  capChecker
	// webhookWarned: the warning about the webhook secret is given once.
	webhookWarned bool
}

// defaultName is the name Decision.Rules gives the default reply.
const defaultName = "default"

// matchKeys lists the match keys for messages.
const matchKeys = "msgtype, event, event_key, scene, text, menu_id, status, from, state, time"

// inboundTypes are the MsgTypes of callbacks; `msgtype` takes only these,
// so that a typo is an error rather than a rule that never matches.
var inboundTypes = []string{"text", "image", "voice", "video", "shortvideo", "location", "link", "file", "event"}

func (c *compiler) compileRules(specs []ruleSpec) []*rule {
	rules := make([]*rule, 0, len(specs))
	for i := range specs {
		path := indexPath("rules", i)
		if c.broken(path) {
			continue // not a mapping: nothing in it can be trusted
		}
		rules = append(rules, c.compileRule(path, &specs[i]))
	}
	c.warnStates(specs)
	return rules
}

func (c *compiler) compileDefault(spec *answerSpec) *rule {
	if spec == nil || c.broken(defaultName) {
		return nil
	}
	if len(spec.Reply) == 0 && !c.corruptAt(defaultName+".reply") {
		c.add(c.node(defaultName), defaultName, false, "needs a reply (or remove default)")
	}
	r := &rule{name: defaultName, answer: c.compileAnswer(defaultName, spec, 0)}
	c.checkCaps(defaultName, r, 1<<trigMessage) // the default never answers an event
	return r
}

func (c *compiler) compileRule(path string, spec *ruleSpec) *rule {
	r := &rule{name: spec.Name, cont: spec.Continue}
	at := c.node(path)
	switch name := strings.TrimSpace(spec.Name); {
	case c.corruptAt(path + ".name"):
	case name == "":
		c.add(at, path, false, "a rule needs a name")
	case name == defaultName:
		c.add(c.node(path+".name"), path+".name", false, "%q is reserved for the default reply", name)
	default:
		if first, dup := c.names[name]; dup {
			c.add(c.node(path+".name"), path+".name", false, "duplicate rule name %q (first at line %d)", name, first.Line)
		} else {
			c.names[name] = c.node(path + ".name")
		}
		r.name = name
	}
	groups := unknownGroups
	switch {
	case c.broken(path + ".match"):
	case spec.Match == nil:
		c.add(at, path, false, "no match: give at least one of %s", matchKeys)
	default:
		r.cond = c.compileMatch(path+".match", spec.Match)
		groups = groupCount(spec.Match, &r.cond)
	}
	r.answer = c.compileAnswer(path, &spec.Answer, groups)
	c.compileState(path, spec, r)
	if spec.Match != nil && !c.broken(path+".match") {
		c.checkCaps(path, r, triggers(&r.cond, spec.Match.Text != nil))
	}
	return r
}

// unknownGroups is the group count of a rule whose regexes did not all
// compile: its templates' use of .Groups is not checked.
const unknownGroups = -1

// groupCount is how long .Groups can be for a rule: the submatches of its
// regex with the most groups, plus the whole match; 0 for a rule without
// a regex, whose .Groups is always empty.
func groupCount(m *matchSpec, cond *condition) int {
	if m.Text != nil && len(m.Text.Regex) != len(cond.regexes) {
		return unknownGroups // a regex that did not compile, reported
	}
	n := 0
	for _, re := range cond.regexes {
		n = max(n, re.NumSubexp()+1)
	}
	return n
}

func (c *compiler) compileMatch(path string, m *matchSpec) condition {
	var cond condition
	lists := [numFields]stringList{
		fieldMsgType: m.MsgType, fieldEvent: m.Event, fieldEventKey: m.EventKey, fieldScene: m.Scene,
		fieldMenuID: m.MenuID, fieldStatus: m.Status, fieldFrom: m.From, fieldState: m.State,
	}
	if m.Text != nil {
		lists[fieldEquals] = m.Text.Equals
	}
	keys := 0
	for f := range numFields {
		fold := strings.TrimSpace
		switch f {
		case fieldMsgType, fieldEvent:
			fold = func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
		case fieldStatus:
			fold = foldStatus
		case fieldEquals:
			fold = normalize
		}
		cond.values[f] = c.values(joinPath(path, fieldNames[f]), lists[f], fold)
		keys += len(lists[f])
		if c.corruptAt(joinPath(path, fieldNames[f])) {
			keys++ // reported; the rule is not "without keys"
		}
	}
	for i, v := range m.MsgType {
		if t := strings.ToLower(strings.TrimSpace(v)); t != "" && !slices.Contains(inboundTypes, t) {
			at := c.elem(joinPath(path, "msgtype"), i)
			c.add(c.node(at), at, false, "%q is not an inbound message type; want one of %s", t, strings.Join(inboundTypes, ", "))
		}
	}
	c.warnEvents(joinPath(path, "event"), m.Event)
	c.warnStatuses(joinPath(path, "status"), m.Status)
	if m.Time != nil || c.corruptAt(path+".time") {
		cond.when = c.compileTime(path+".time", m.Time)
		keys++ // given; its problems are reported
	}
	if t := m.Text; t != nil && !c.broken(path+".text") {
		cond.contains = c.values(path+".text.contains", t.Contains, normalize)
		cond.prefix = c.values(path+".text.prefix", t.Prefix, normalize)
		c.compileRegexes(path+".text.regex", t.Regex, &cond)
		if len(t.Equals)+len(t.Contains)+len(t.Prefix)+len(t.Regex) == 0 && !c.corruptAt(path+".text") {
			c.add(c.node(path+".text"), path+".text", false, "needs at least one of equals, contains, prefix, regex")
		}
		keys++ // text was given; if it is empty, that is the problem to report
	}
	if keys == 0 && !c.corruptAt(path) {
		c.add(c.node(path), path, false, "no keys: give at least one of %s", matchKeys)
	}
	return cond
}

// elem is the path of the i-th value of a key that may be one string or a
// list: the checker records both.
func (c *checker) elem(path string, i int) string {
	if p := indexPath(path, i); c.nodes[p] != nil {
		return p
	}
	return path
}

// values folds each value of a key, reporting those that fold to nothing:
// an empty value would never match (or, for contains, always).
func (c *compiler) values(path string, list stringList, fold func(string) string) []string {
	out := make([]string, 0, len(list))
	for i, v := range list {
		f := fold(v)
		if f == "" {
			c.add(c.node(c.elem(path, i)), c.elem(path, i), false, "empty value")
			continue
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// compileAnswer compiles a rule's (or the default's) options and reply
// items; groups is what groupCount says of the rule.
func (c *compiler) compileAnswer(path string, spec *answerSpec, groups int) answer {
	a := answer{passive: spec.Passive}
	switch {
	case spec.Pick == "" || spec.Pick == "all" || c.corruptAt(joinPath(path, "pick")):
	case spec.Pick == "random":
		a.random = true
	default:
		c.add(c.node(path+".pick"), joinPath(path, "pick"), false, "want all or random, got %q", spec.Pick)
	}
	for j := range spec.Reply {
		at := indexPath(joinPath(path, "reply"), j)
		if c.corruptAt(at) {
			continue
		}
		if it := c.compileItem(at, &spec.Reply[j], groups); it != nil {
			a.items = append(a.items, it)
		}
	}
	if spec.Passive && !c.corruptAt(joinPath(path, "reply")) && !c.corruptAt(joinPath(path, "pick")) {
		c.checkPassive(path, spec)
	}
	c.checkTransfers(path, spec)
	a.fallback = c.compileFallback(path, spec, groups)
	return a
}

// checkPassive checks that the item a passive rule answers in the HTTP
// response can be one: any item when pick is random, else the first.
func (c *compiler) checkPassive(path string, spec *answerSpec) {
	if len(spec.Reply) == 0 {
		c.add(c.node(path+".passive"), joinPath(path, "passive"), false, "true needs a reply item to answer with")
		return
	}
	candidates := spec.Reply[:1]
	if spec.Pick == "random" {
		candidates = spec.Reply
	}
	for j, r := range candidates {
		itemPath := indexPath(joinPath(path, "reply"), j)
		at := c.node(itemPath)
		switch {
		case r.Webhook != nil || r.Transfer != nil:
			// a webhook's answer is checked when it comes; a hand-over is passive
		case r.Custom == nil && r.Template == nil:
			// reported by the checker
		case r.Template != nil || !wechat.IsPassiveType(r.Custom.MsgType):
			c.add(at, itemPath, false, "a passive reply (passive: true) is text, image, voice, video, music or news, not %s", r.Key)
		default:
			visitFiles(r.Custom, func(p string, s *string) {
				if *s != "" {
					c.add(c.node(itemPath+"."+p), itemPath+"."+p, false,
						"a passive reply (passive: true) needs an uploaded media_id, not a file: there is no time to upload within WeChat's 5 seconds")
				}
			})
		}
	}
}

func (c *compiler) compileItem(path string, spec *replySpec, groups int) *item {
	it := &item{custom: spec.Custom, template: spec.Template}
	prefix := path + "."
	var fps []wechat.FieldProblem
	switch {
	case it.custom != nil:
		fps = it.custom.Validate()
		visitFiles(it.custom, func(p string, s *string) { c.resolveFile(prefix+p, s) })
	case it.template != nil:
		prefix += templateKey + "."
		fps = it.template.Validate()
	case spec.Webhook != nil:
		it.webhook = c.compileWebhook(prefix+webhookKey, spec.Webhook)
		return it
	case spec.Transfer != nil:
		it.transfer = spec.Transfer
		return it
	default:
		return nil // the checker reported why
	}
	c.fieldProblems(prefix, fps)
	for _, fe := range it.compileTemplates(prefix, groups) {
		c.add(c.node(prefix+fe.path), prefix+fe.path, false, "invalid template: %v", fe.err)
	}
	return it
}

// fieldProblems reports what a message's Validate found, under prefix.
func (c *compiler) fieldProblems(prefix string, fps []wechat.FieldProblem) {
	for _, fp := range fps {
		if c.broken(prefix + fp.Path) {
			continue // reported already, as what it is
		}
		c.add(c.node(prefix+fp.Path), prefix+fp.Path, false, "%s", fp.Msg)
	}
}

// visitFiles calls f with the path and address of every local file field
// of m's payload.
func visitFiles(m *wechat.CustomMessage, f func(path string, s *string)) {
	if p := m.Image; p != nil {
		f("image.file", &p.File)
	}
	if p := m.Voice; p != nil {
		f("voice.file", &p.File)
	}
	if p := m.Video; p != nil {
		f("video.file", &p.File)
		f("video.thumb_file", &p.ThumbFile)
	}
	if p := m.Music; p != nil {
		f("music.thumb_file", &p.ThumbFile)
	}
	if p := m.MiniProgramPage; p != nil {
		f("miniprogrampage.thumb_file", &p.ThumbFile)
	}
}

// resolveFile makes a file path absolute, relative to the rules file's
// directory, and checks that it is a file that can be read.
func (c *compiler) resolveFile(path string, s *string) {
	if *s == "" {
		return
	}
	p := *s
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	at := c.node(path)
	st, err := os.Stat(p)
	switch {
	case err != nil && os.IsNotExist(err):
		c.add(at, path, false, "no such file %s", p)
	case err != nil:
		c.add(at, path, false, "%v", err)
	case !st.Mode().IsRegular():
		c.add(at, path, false, "%s is not a regular file", p)
	}
	*s = p
}
