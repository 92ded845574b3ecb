package rules

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// The sample at the repository root must stay valid, and give no warning:
// it is what a new operator copies.
func TestSampleIsValid(t *testing.T) {
	for _, p := range Check("../rules.yaml") {
		t.Error(p)
	}
}

// TestSampleDecides walks the sample's rules the way its comments promise.
func TestSampleDecides(t *testing.T) {
	s, err := Load("../rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vip := textMsg("hello")
	vip.FromUserName = "OPENID_OF_A_VIP"
	menuClick := textMsg("满意")
	menuClick.BizMsgMenuID = "101"
	menuClickNo := textMsg("不满意")
	menuClickNo.BizMsgMenuID = "102"
	blocked := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "1", Status: "failed:user block"}
	systemFailed := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "2", Status: "failed:system failed"}
	delivered := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "3", Status: "success"}
	image := &wechat.Message{FromUserName: testUser, MsgType: "image", MsgId: "7"}

	tests := []struct {
		name    string
		msg     *wechat.Message
		rules   []string
		replies []string // msgtype of each reply; "template" for a template message
		passive string   // msgtype of the passive reply
	}{
		{"full-width hello", textMsg("ＨＥＬＬＯ"), []string{"greeting"}, []string{"text"}, ""},
		{"vip", vip, []string{"vip", "greeting"}, []string{"text", "text"}, ""},
		{"order", textMsg("订单 12345678"), []string{"order-status"}, []string{"text"}, ""},
		{"help", textMsg("help me"), []string{"help"}, []string{"text"}, ""},
		{"follow", eventMsg("subscribe", ""), []string{"welcome"}, []string{"text", "image", "news"}, ""},
		// Three customer-service messages, what a follow allows: the
		// campaign's greeting goes back passively.
		{"follow by the spring QR code", eventMsg("subscribe", "qrscene_spring"), []string{"spring-campaign", "welcome"}, []string{"text", "image", "news"}, "text"},
		{"scan of the spring QR code", eventMsg("SCAN", "spring"), []string{"spring-campaign"}, nil, "text"},
		{"survey", textMsg("我想评价"), []string{"survey"}, []string{"msgmenu"}, ""},
		{"msgmenu click", menuClick, []string{"satisfied"}, []string{"text"}, ""},
		{"the other msgmenu choice", menuClickNo, []string{"dissatisfied"}, []string{"text"}, ""},
		{"music menu", eventMsg("CLICK", "V1001_TODAY_MUSIC"), []string{"today-music"}, nil, ""},
		{"picture", image, []string{"pictures"}, []string{"text"}, ""},
		{"passive", textMsg("营业时间？"), []string{"opening-hours"}, nil, "text"},
		{"media samples", eventMsg("CLICK", "V1001_SAMPLES"), []string{"media-samples"}, []string{"voice", "video", "mpnews"}, ""},
		{"more media samples", eventMsg("CLICK", "V1001_MORE_SAMPLES"), []string{"more-samples"}, []string{"mpnewsarticle", "wxcard", "miniprogrampage"}, ""},
		{"template message", textMsg("发货通知 单号 123"), []string{"order-shipped"}, []string{"template"}, ""},
		{"template job blocked", blocked, []string{"template-failed"}, nil, ""},
		{"template job failed, spelt without the space", systemFailed, []string{"template-failed"}, nil, ""},
		{"template job delivered", delivered, nil, nil, ""},
		{"anything else", textMsg("随便说点什么"), []string{"default"}, []string{"text"}, ""},
		{"an event nothing matches", eventMsg("unsubscribe", ""), nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.msg)
			if !slices.Equal(d.Rules, tt.rules) {
				t.Errorf("rules = %q, want %q", d.Rules, tt.rules)
			}
			var types []string
			for _, r := range d.Replies {
				if r.Template != nil {
					types = append(types, "template")
				} else {
					types = append(types, r.Custom.MsgType)
				}
			}
			if tt.name == "music menu" {
				if len(types) != 1 {
					t.Errorf("pick random sent %q, want one reply", types)
				}
			} else if !slices.Equal(types, tt.replies) {
				t.Errorf("replies = %q, want %q", types, tt.replies)
			}
			passive := ""
			if d.Passive != nil {
				passive = d.Passive.MsgType
			}
			if passive != tt.passive {
				t.Errorf("passive = %q, want %q", passive, tt.passive)
			}
		})
	}

	d := s.Decide(eventMsg("subscribe", ""))
	want, _ := filepath.Abs("../media/welcome.png")
	if img := d.Replies[1].Custom.Image; img == nil || img.File != want {
		t.Errorf("welcome image = %+v, want file %s", img, want)
	}
	if got := s.Decide(textMsg("订单 12345678")).Replies[0].Custom.Text.Content; got != "订单 12345678 正在处理" {
		t.Errorf("order reply = %q", got)
	}
}

// Every choice of every msgmenu in the sample is answered by a rule of its
// own, not by the default.
func TestSampleAnswersEveryMsgmenuChoice(t *testing.T) {
	s, err := Load("../rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range s.rules {
		for _, it := range r.items {
			if it.custom == nil || it.custom.MsgMenu == nil {
				continue
			}
			for _, choice := range it.custom.MsgMenu.List {
				n++
				tap := textMsg(choice.Content)
				tap.BizMsgMenuID = choice.ID
				d := s.Decide(tap)
				if len(d.Rules) == 0 || d.Rules[0] == defaultName || len(d.Replies)+btoi(d.Passive != nil) == 0 {
					t.Errorf("rule %s offers %q (id %s): a tap on it gets rules %q and %d replies", r.name, choice.Content, choice.ID, d.Rules, len(d.Replies))
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("the sample offers no msgmenu")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
