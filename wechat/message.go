package wechat

import "encoding/xml"

// Message is one inbound callback from WeChat: a user message or an event.
// Every documented message type and event parses into it; fields that a
// type does not carry stay zero. Tags the struct does not know are kept in
// Unknown so they can be logged, never rejected.
type Message struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string   `xml:"ToUserName"`
	FromUserName string   `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      string   `xml:"MsgType"`

	// MsgId identifies user messages. TEMPLATESENDJOBFINISH and
	// MASSSENDJOBFINISH spell it MsgID; both are kept as strings so that
	// no 64-bit value is ever rounded.
	MsgId string `xml:"MsgId"`
	MsgID string `xml:"MsgID"`

	// text; a msgmenu click arrives as text with BizMsgMenuID set.
	Content      string `xml:"Content"`
	BizMsgMenuID string `xml:"bizmsgmenuid"`

	// image, voice, video, shortvideo
	PicUrl       string `xml:"PicUrl"`
	MediaId      string `xml:"MediaId"`
	Format       string `xml:"Format"`
	Recognition  string `xml:"Recognition"`
	ThumbMediaId string `xml:"ThumbMediaId"`

	// location
	LocationX float64 `xml:"Location_X"`
	LocationY float64 `xml:"Location_Y"`
	Scale     float64 `xml:"Scale"`
	Label     string  `xml:"Label"`

	// link
	Title       string `xml:"Title"`
	Description string `xml:"Description"`
	Url         string `xml:"Url"`

	// events
	Event     string  `xml:"Event"`
	EventKey  string  `xml:"EventKey"`
	Ticket    string  `xml:"Ticket"`
	Latitude  float64 `xml:"Latitude"`
	Longitude float64 `xml:"Longitude"`
	Precision float64 `xml:"Precision"`
	MenuId    string  `xml:"MenuId"`

	ScanCodeInfo     *ScanCodeInfo     `xml:"ScanCodeInfo"`
	SendPicsInfo     *SendPicsInfo     `xml:"SendPicsInfo"`
	SendLocationInfo *SendLocationInfo `xml:"SendLocationInfo"`

	// TEMPLATESENDJOBFINISH, MASSSENDJOBFINISH
	Status      string `xml:"Status"`
	TotalCount  int    `xml:"TotalCount"`
	FilterCount int    `xml:"FilterCount"`
	SentCount   int    `xml:"SentCount"`
	ErrorCount  int    `xml:"ErrorCount"`

	// subscribe_msg_popup_event, subscribe_msg_change_event,
	// subscribe_msg_sent_event
	SubscribeMsgPopupEvent  *SubscribeMsgEvent `xml:"SubscribeMsgPopupEvent"`
	SubscribeMsgChangeEvent *SubscribeMsgEvent `xml:"SubscribeMsgChangeEvent"`
	SubscribeMsgSentEvent   *SubscribeMsgEvent `xml:"SubscribeMsgSentEvent"`

	// Encrypt is the ciphertext in compatible and safe mode.
	Encrypt string `xml:"Encrypt"`

	// Unknown holds every element the struct has no field for.
	Unknown []UnknownElement `xml:",any"`
}

// UnknownElement is a tag Message does not model, kept for logging: its
// name and its text (the text of nested elements is not kept).
type UnknownElement struct {
	XMLName xml.Name
	Value   string `xml:",chardata"`
}

// ScanCodeInfo comes with scancode_push and scancode_waitmsg.
type ScanCodeInfo struct {
	ScanType   string `xml:"ScanType"`
	ScanResult string `xml:"ScanResult"`
}

// SendPicsInfo comes with pic_sysphoto, pic_photo_or_album and pic_weixin.
type SendPicsInfo struct {
	Count   int       `xml:"Count"`
	PicList []PicItem `xml:"PicList>item"`
}

// PicItem is one picture of SendPicsInfo.
type PicItem struct {
	PicMd5Sum string `xml:"PicMd5Sum"`
}

// SendLocationInfo comes with location_select.
type SendLocationInfo struct {
	LocationX float64 `xml:"Location_X"`
	LocationY float64 `xml:"Location_Y"`
	Scale     float64 `xml:"Scale"`
	Label     string  `xml:"Label"`
	Poiname   string  `xml:"Poiname"`
}

// SubscribeMsgEvent is the list carried by the subscribe-message events.
type SubscribeMsgEvent struct {
	List []SubscribeMsgItem `xml:"List"`
}

// SubscribeMsgItem is one template of a subscribe-message event.
type SubscribeMsgItem struct {
	TemplateId            string `xml:"TemplateId"`
	SubscribeStatusString string `xml:"SubscribeStatusString"`
	PopupScene            string `xml:"PopupScene"`
	ErrorCode             string `xml:"ErrorCode"`
	ErrorStatus           string `xml:"ErrorStatus"`
	MsgID                 string `xml:"MsgID"`
}
