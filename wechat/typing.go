package wechat

import "context"

// Typing commands of message/custom/typing.
const (
	TypingOn  = "Typing"
	TypingOff = "CancelTyping"
)

// Typing shows (typing true) or hides the "typing…" indicator in the
// user's chat. WeChat hides it by itself after a while or when a message
// arrives; like a message it needs the 48-hour window.
func (c *Client) Typing(ctx context.Context, openid string, typing bool) error {
	if openid == "" {
		return ErrInvalidMessage
	}
	cmd := TypingOff
	if typing {
		cmd = TypingOn
	}
	return c.postJSON(ctx, PathTyping, struct {
		ToUser  string `json:"touser"`
		Command string `json:"command"`
	}{openid, cmd}, nil)
}
