package wechat

// captureWant is what one plain capture under test/testdata/plain must
// parse to. Msg leaves ToUserName (always gh_test0000001) and, when it is
// oTEST_user_0001, FromUserName empty.
type captureWant struct {
	Msg         Message
	UnknownTags []string
	Scene       string
	OpensWindow bool
	DedupeKey   string
}

const testTicket = "gQTEST8AAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xL3Rlc3QAAg"

var captureWants = map[string]captureWant{
	"text.xml": {
		Msg:         Message{CreateTime: 1732520001, MsgType: "text", Content: "你好", MsgId: "24812345678900001"},
		OpensWindow: true, DedupeKey: "msg:24812345678900001",
	},
	"text_msgmenu.xml": {
		Msg:         Message{CreateTime: 1732520002, MsgType: "text", Content: "满意", MsgId: "24812345678900002", BizMsgMenuID: "101"},
		OpensWindow: true, DedupeKey: "msg:24812345678900002",
	},
	"image.xml": {
		Msg:         Message{CreateTime: 1732520003, MsgType: "image", PicUrl: "http://mmbiz.qpic.cn/mmbiz_jpg/TESTpicurl0001/0", MediaId: "TEST_image_media_id_0001", MsgId: "24812345678900003"},
		OpensWindow: true, DedupeKey: "msg:24812345678900003",
	},
	"voice.xml": {
		Msg:         Message{FromUserName: "oTEST_user_0002", CreateTime: 1732520004, MsgType: "voice", MediaId: "TEST_voice_media_id_0001", Format: "amr", Recognition: "订单123456", MsgId: "24812345678900004"},
		OpensWindow: true, DedupeKey: "msg:24812345678900004",
	},
	"video.xml": {
		Msg:         Message{CreateTime: 1732520005, MsgType: "video", MediaId: "TEST_video_media_id_0001", ThumbMediaId: "TEST_video_thumb_0001", MsgId: "24812345678900005"},
		OpensWindow: true, DedupeKey: "msg:24812345678900005",
	},
	"shortvideo.xml": {
		Msg:         Message{CreateTime: 1732520006, MsgType: "shortvideo", MediaId: "TEST_shortvideo_media_id_0001", ThumbMediaId: "TEST_shortvideo_thumb_0001", MsgId: "24812345678900006"},
		OpensWindow: true, DedupeKey: "msg:24812345678900006",
	},
	"location.xml": {
		Msg:         Message{CreateTime: 1732520007, MsgType: "location", LocationX: 23.134521, LocationY: 113.358803, Scale: 20, Label: "广东省广州市天河区天河路208号", MsgId: "24812345678900007"},
		OpensWindow: true, DedupeKey: "msg:24812345678900007",
	},
	"link.xml": {
		Msg:         Message{CreateTime: 1732520008, MsgType: "link", Title: "公众平台官网链接", Description: "公众平台官网链接", Url: "https://example.com/articles/1?a=1&b=2", MsgId: "24812345678900008"},
		OpensWindow: true, DedupeKey: "msg:24812345678900008",
	},
	"event_subscribe.xml": {
		Msg:         Message{FromUserName: "oTEST_user_0003", CreateTime: 1732520009, MsgType: "event", Event: "subscribe"},
		OpensWindow: true, DedupeKey: "evt:oTEST_user_0003:1732520009:subscribe",
	},
	"event_subscribe_qrscene.xml": {
		Msg:   Message{FromUserName: "oTEST_user_0004", CreateTime: 1732520010, MsgType: "event", Event: "subscribe", EventKey: "qrscene_123", Ticket: testTicket},
		Scene: "123", OpensWindow: true, DedupeKey: "evt:oTEST_user_0004:1732520010:subscribe:qrscene_123",
	},
	"event_unsubscribe.xml": {
		Msg:       Message{FromUserName: "oTEST_user_0005", CreateTime: 1732520011, MsgType: "event", Event: "unsubscribe"},
		DedupeKey: "evt:oTEST_user_0005:1732520011:unsubscribe",
	},
	"event_scan.xml": {
		Msg:   Message{CreateTime: 1732520012, MsgType: "event", Event: "SCAN", EventKey: "123", Ticket: testTicket},
		Scene: "123", OpensWindow: true, DedupeKey: "evt:oTEST_user_0001:1732520012:SCAN:123",
	},
	"event_location.xml": {
		Msg:       Message{CreateTime: 1732520013, MsgType: "event", Event: "LOCATION", Latitude: 23.137466, Longitude: 113.352425, Precision: 119.385040},
		DedupeKey: "evt:oTEST_user_0001:1732520013:LOCATION",
	},
	"event_click.xml": {
		Msg:         Message{CreateTime: 1732520014, MsgType: "event", Event: "CLICK", EventKey: "V1001_TODAY_MUSIC"},
		OpensWindow: true, DedupeKey: "evt:oTEST_user_0001:1732520014:CLICK:V1001_TODAY_MUSIC",
	},
	"event_view.xml": {
		Msg:       Message{CreateTime: 1732520015, MsgType: "event", Event: "VIEW", EventKey: "https://example.com/shop?from=menu", MenuId: "402891234"},
		DedupeKey: "evt:oTEST_user_0001:1732520015:VIEW:https://example.com/shop?from=menu",
	},
	"event_scancode_push.xml": {
		Msg: Message{CreateTime: 1732520016, MsgType: "event", Event: "scancode_push", EventKey: "rselfmenu_0_1",
			ScanCodeInfo: &ScanCodeInfo{ScanType: "qrcode", ScanResult: "https://example.com/qr?id=42"}},
		OpensWindow: true, DedupeKey: "evt:oTEST_user_0001:1732520016:scancode_push:rselfmenu_0_1",
	},
	"event_scancode_waitmsg.xml": {
		Msg: Message{CreateTime: 1732520017, MsgType: "event", Event: "scancode_waitmsg", EventKey: "rselfmenu_0_0",
			ScanCodeInfo: &ScanCodeInfo{ScanType: "barcode", ScanResult: "EAN_13,6901234567892"}},
		OpensWindow: true, DedupeKey: "evt:oTEST_user_0001:1732520017:scancode_waitmsg:rselfmenu_0_0",
	},
	"event_pic_sysphoto.xml": {
		Msg: Message{CreateTime: 1732520018, MsgType: "event", Event: "pic_sysphoto", EventKey: "rselfmenu_1_0",
			SendPicsInfo: &SendPicsInfo{Count: 1, PicList: []PicItem{{PicMd5Sum: "1b5f7c23b5bf75682a53e7b6d163e185"}}}},
		DedupeKey: "evt:oTEST_user_0001:1732520018:pic_sysphoto:rselfmenu_1_0",
	},
	"event_pic_photo_or_album.xml": {
		Msg: Message{CreateTime: 1732520019, MsgType: "event", Event: "pic_photo_or_album", EventKey: "rselfmenu_1_1",
			SendPicsInfo: &SendPicsInfo{Count: 2, PicList: []PicItem{{PicMd5Sum: "5a75aaca956d97be686719218f275c6b"}, {PicMd5Sum: "9c2e1d4a8f7b3e6d5c4b3a2918273645"}}}},
		DedupeKey: "evt:oTEST_user_0001:1732520019:pic_photo_or_album:rselfmenu_1_1",
	},
	"event_pic_weixin.xml": {
		Msg: Message{CreateTime: 1732520020, MsgType: "event", Event: "pic_weixin", EventKey: "rselfmenu_1_2",
			SendPicsInfo: &SendPicsInfo{Count: 1, PicList: []PicItem{{PicMd5Sum: "5a75aaca956d97be686719218f275c6b"}}}},
		DedupeKey: "evt:oTEST_user_0001:1732520020:pic_weixin:rselfmenu_1_2",
	},
	"event_location_select.xml": {
		Msg: Message{CreateTime: 1732520021, MsgType: "event", Event: "location_select", EventKey: "rselfmenu_2_0",
			SendLocationInfo: &SendLocationInfo{LocationX: 23, LocationY: 113, Scale: 15, Label: " 广州市海珠区客村艺苑路 106号"}},
		DedupeKey: "evt:oTEST_user_0001:1732520021:location_select:rselfmenu_2_0",
	},
	"event_view_miniprogram.xml": {
		Msg:       Message{CreateTime: 1732520022, MsgType: "event", Event: "view_miniprogram", EventKey: "pages/index/index", MenuId: "402891235"},
		DedupeKey: "evt:oTEST_user_0001:1732520022:view_miniprogram:pages/index/index",
	},
	"event_templatesendjobfinish.xml": {
		Msg:       Message{CreateTime: 1732520023, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "2002288332", Status: "success"},
		DedupeKey: "evt:oTEST_user_0001:1732520023:TEMPLATESENDJOBFINISH:2002288332",
	},
	"event_templatesendjobfinish_block.xml": {
		Msg:       Message{FromUserName: "oTEST_user_0006", CreateTime: 1732520024, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "2002288333", Status: "failed:user block"},
		DedupeKey: "evt:oTEST_user_0006:1732520024:TEMPLATESENDJOBFINISH:2002288333",
	},
	"event_masssendjobfinish.xml": {
		Msg: Message{FromUserName: "oTEST_admin_0001", CreateTime: 1732520025, MsgType: "event", Event: "MASSSENDJOBFINISH", MsgID: "1000001625",
			Status: "send success", TotalCount: 100, FilterCount: 80, SentCount: 75, ErrorCount: 5},
		UnknownTags: []string{"CopyrightCheckResult"},
		DedupeKey:   "evt:oTEST_admin_0001:1732520025:MASSSENDJOBFINISH:1000001625",
	},
	"event_subscribe_msg_popup_event.xml": {
		Msg: Message{CreateTime: 1732520026, MsgType: "event", Event: "subscribe_msg_popup_event",
			SubscribeMsgPopupEvent: &SubscribeMsgEvent{List: []SubscribeMsgItem{
				{TemplateId: "TEST_tmpl_accept_0001", SubscribeStatusString: "accept", PopupScene: "2"},
				{TemplateId: "TEST_tmpl_reject_0002", SubscribeStatusString: "reject", PopupScene: "2"},
			}}},
		DedupeKey: "evt:oTEST_user_0001:1732520026:subscribe_msg_popup_event",
	},
	"unknown_type.xml": {
		Msg:         Message{CreateTime: 1732520027, MsgType: "channels_live", MsgId: "24812345678900027"},
		UnknownTags: []string{"LiveId", "Extra"},
		DedupeKey:   "msg:24812345678900027",
	},
}
