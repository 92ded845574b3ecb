package wechat

import (
	"context"
	"errors"
)

// MaxTextBytes is the most a text message's content may hold, in bytes
// of UTF-8 (a Chinese character is three): WeChat answers 45002 to more.
const MaxTextBytes = 2048

// ErrInvalidMessage is returned before any call for a message that cannot
// be sent: no recipient, or no message type.
var ErrInvalidMessage = errors.New("wechat: invalid message")

// SendCustom sends one customer-service message through
// message/custom/send. Media objects must carry their media_id; a Sender
// uploads files first. The JSON is written without HTML escaping, so a
// text's <a href> links reach the user as links.
func (c *Client) SendCustom(ctx context.Context, m *CustomMessage) error {
	if m == nil || m.ToUser == "" || m.MsgType == "" {
		return ErrInvalidMessage
	}
	return c.postJSON(ctx, PathCustomSend, m, nil)
}
