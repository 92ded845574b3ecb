package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/wxreply/wxreply/wechat"
)

// The warnings of this file are about values that load but that WeChat
// never sends, so a rule with them never matches: a misspelt event name,
// a status no job reports, a msgmenu choice no rule answers.

// knownEvents are the event names WeChat sends to an official account's
// callback, lower-cased (event is compared without case): those wechat
// models, then those documented for the account's other features (cards,
// stores, customer service, invoices, Wi-Fi …), which the server receives
// as any event.
var knownEvents = func() []string {
	names := []string{
		wechat.EventSubscribe, wechat.EventUnsubscribe, wechat.EventScan, wechat.EventLocation,
		wechat.EventClick, wechat.EventView, wechat.EventScancodePush, wechat.EventScancodeWaitMsg,
		wechat.EventPicSysPhoto, wechat.EventPicPhotoOrAlbum, wechat.EventPicWeixin,
		wechat.EventLocationSelect, wechat.EventViewMiniProgram,
		wechat.EventTemplateSendJobFinish, wechat.EventMassSendJobFinish,
		wechat.EventSubscribeMsgPopup, wechat.EventSubscribeMsgChange, wechat.EventSubscribeMsgSent,
		"PUBLISHJOBFINISH", "ENTER",
		"kf_create_session", "kf_close_session", "kf_switch_session",
		"card_pass_check", "card_not_pass_check", "user_get_card", "user_gifting_card", "user_del_card",
		"user_consume_card", "user_pay_from_pay_cell", "user_view_card", "user_enter_session_from_card",
		"update_member_card", "card_sku_remind", "card_pay_order", "submit_membercard_user_info",
		"giftcard_pay_done", "giftcard_send_to_friend", "giftcard_user_accept",
		"qualification_verify_success", "qualification_verify_fail", "naming_verify_success",
		"naming_verify_fail", "annual_renew", "verify_expired",
		"poi_check_notify", "add_store_audit_info", "modify_store_audit_info",
		"create_map_poi_audit_info", "apply_merchant_audit_info",
		"WifiConnected", "ShakearoundUserShake",
		"user_scan_product", "user_scan_product_enter_session", "user_scan_product_async",
		"user_scan_product_verify_action", "merchant_order",
		"user_authorize_invoice", "update_invoice_status", "submit_invoice_title",
		"guide_qrcode_scan_event",
	}
	for i, n := range names {
		names[i] = strings.ToLower(n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}()

// eventSpelling is the spelling of a known event for messages: WeChat's
// own (SCAN, not scan).
var eventSpelling = map[string]string{
	"scan": wechat.EventScan, "location": wechat.EventLocation, "click": wechat.EventClick,
	"view": wechat.EventView, "templatesendjobfinish": wechat.EventTemplateSendJobFinish,
	"masssendjobfinish": wechat.EventMassSendJobFinish, "publishjobfinish": "PUBLISHJOBFINISH",
	"enter": "ENTER", "wificonnected": "WifiConnected", "shakearoundusershake": "ShakearoundUserShake",
}

func spellEvent(e string) string {
	if s, ok := eventSpelling[e]; ok {
		return s
	}
	return e
}

// warnEvents warns of each value of match.event that WeChat never sends.
func (c *compiler) warnEvents(path string, events stringList) {
	for i, v := range events {
		e := strings.ToLower(strings.TrimSpace(v))
		if e == "" {
			continue // an error already
		}
		if _, found := slices.BinarySearch(knownEvents, e); found {
			continue
		}
		at := c.elem(path, i)
		hint := "; the README lists the events, see Matching"
		if near := nearest(e, knownEvents); near != "" {
			hint = "; did you mean " + spellEvent(near) + "?"
		}
		c.warn(c.node(at), at, "%q is not an event WeChat sends: the rule never matches it%s", v, hint)
	}
}

// Statuses of the job-finished events, in the form foldStatus gives them:
// TEMPLATESENDJOBFINISH reports success, "failed:user block" and "failed:
// system failed"; MASSSENDJOBFINISH "send success" (sent as sendsuccess),
// "send fail" or err(N) with WeChat's error code.
var (
	knownStatuses = []string{"success", "failed:user block", "failed:system failed", "sendsuccess", "send success", "sendfail", "send fail"}
	errStatus     = regexp.MustCompile(`^err\(\d+\)$`)
	// statusSpelling is how WeChat writes them, for messages.
	statusSpelling = map[string]string{"failed:system failed": "failed: system failed"}
)

// warnStatuses warns of each value of match.status that no job reports.
func (c *compiler) warnStatuses(path string, statuses stringList) {
	for i, v := range statuses {
		s := foldStatus(v)
		if s == "" || slices.Contains(knownStatuses, s) || errStatus.MatchString(s) {
			continue
		}
		at := c.elem(path, i)
		hint := ""
		if near := nearest(s, knownStatuses); near != "" {
			if sp, ok := statusSpelling[near]; ok {
				near = sp
			}
			hint = fmt.Sprintf("did you mean %q? ", near)
		}
		c.warn(c.node(at), at, "%q is not a status WeChat reports: the rule never matches it; %s"+
			"TEMPLATESENDJOBFINISH reports success, \"failed:user block\" or \"failed: system failed\", "+
			"MASSSENDJOBFINISH sendsuccess, sendfail or err(N)", v, hint)
	}
}

// warnUnansweredChoices warns of each msgmenu choice that no rule matches
// when a user taps it: the tap comes back as a text message with the
// choice's text and its id as bizmsgmenuid, and would get the default
// reply, or nothing. s is the loaded set, so that the real matcher decides.
func (c *compiler) warnUnansweredChoices(s *Set) {
	for ri, r := range append(slices.Clip(s.rules), s.def) {
		if r == nil {
			continue
		}
		for ii, it := range r.items {
			if it.custom == nil || it.custom.MsgMenu == nil {
				continue
			}
			for li, choice := range it.custom.MsgMenu.List {
				if choice.ID == "" || strings.Contains(choice.ID, "{{") {
					continue // a templated id is known only when it is sent
				}
				tap := &wechat.Message{MsgType: wechat.MsgTypeText, Content: choice.Content, BizMsgMenuID: choice.ID}
				in := newInput(tap)
				if len(s.match(&in, nil)) > 0 {
					continue
				}
				// The file has no errors, so every rule and item was
				// compiled: indexes are those of the file.
				owner := defaultName
				if r != s.def {
					owner = indexPath("rules", ri)
				}
				at := fmt.Sprintf("%s.reply[%d].msgmenu.list[%d].id", owner, ii, li)
				then := "no reply"
				if s.def != nil {
					then = "the default reply"
				}
				c.warn(c.node(at), at, "no rule answers the choice %q: a tap on it gets %s; answer it with a rule that has `menu_id: %q`",
					choice.ID, then, choice.ID)
			}
		}
	}
}
