package wechat

import "context"

// SendTemplate sends one template message through message/template/send
// and returns WeChat's msgid, which the TEMPLATESENDJOBFINISH event
// reporting the outcome carries. Template messages are not bound to the
// 48-hour window.
func (c *Client) SendTemplate(ctx context.Context, m *TemplateMessage) (int64, error) {
	if m == nil || m.ToUser == "" || m.TemplateID == "" {
		return 0, ErrInvalidMessage
	}
	var ans struct {
		MsgID int64 `json:"msgid"`
	}
	if err := c.postJSON(ctx, PathTemplateSend, m, &ans); err != nil {
		return 0, err
	}
	return ans.MsgID, nil
}
