package wechat

import (
	"context"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"
)

// PathQRCodeCreate creates a parametric QR code.
const PathQRCodeCreate = "/cgi-bin/qrcode/create"

// ShowQRCodeURL is where WeChat serves a QR code's image: add
// ?ticket=URL-ENCODED-TICKET, as QRCode.ImageURL does.
const ShowQRCodeURL = "https://mp.weixin.qq.com/cgi-bin/showqrcode"

// Action names of qrcode/create for string scenes: a temporary code
// (with expire_seconds) and a permanent one (at most 100,000 an account).
const (
	QRStrScene      = "QR_STR_SCENE"
	QRLimitStrScene = "QR_LIMIT_STR_SCENE"
)

// Limits of qrcode/create. A temporary code lives at most MaxQRExpire;
// wxreply refuses less than MinQRExpire, which WeChat gives a code whose
// expire_seconds is left out. A scene_str is 1 to MaxSceneBytes bytes.
const (
	MaxQRExpire   = 30 * 24 * time.Hour
	MinQRExpire   = 60 * time.Second
	MaxSceneBytes = 64
)

// QRCodeRequest is the body of qrcode/create.
type QRCodeRequest struct {
	ExpireSeconds int64        `json:"expire_seconds,omitempty"` // temporary codes only
	ActionName    string       `json:"action_name"`
	ActionInfo    QRActionInfo `json:"action_info"`
}

// QRActionInfo holds the scene a QR code carries.
type QRActionInfo struct {
	Scene QRScene `json:"scene"`
}

// QRScene is the scene: a string for the _STR_ actions.
type QRScene struct {
	SceneStr string `json:"scene_str,omitempty"`
}

// QRCode is qrcode/create's answer.
type QRCode struct {
	Ticket        string `json:"ticket"`
	ExpireSeconds int64  `json:"expire_seconds,omitempty"` // 0 for a permanent code
	URL           string `json:"url"`                      // the string the code encodes
}

// ImageURL is the address of the code's image.
func (q *QRCode) ImageURL() string {
	return ShowQRCodeURL + "?ticket=" + url.QueryEscape(q.Ticket)
}

// TemporaryQRCode is the request of a code for scene that expires after
// expire (whole seconds).
func TemporaryQRCode(scene string, expire time.Duration) *QRCodeRequest {
	return &QRCodeRequest{
		ExpireSeconds: int64(expire / time.Second),
		ActionName:    QRStrScene,
		ActionInfo:    QRActionInfo{Scene: QRScene{SceneStr: scene}},
	}
}

// PermanentQRCode is the request of a code for scene that never expires.
func PermanentQRCode(scene string) *QRCodeRequest {
	return &QRCodeRequest{ActionName: QRLimitStrScene, ActionInfo: QRActionInfo{Scene: QRScene{SceneStr: scene}}}
}

// CheckScene says what is wrong with a scene_str, nil when nothing is.
func CheckScene(scene string) error {
	switch n := len(scene); {
	case n == 0:
		return fmt.Errorf("the scene is empty: give 1 to %d bytes", MaxSceneBytes)
	case n > MaxSceneBytes:
		return fmt.Errorf("the scene is %d bytes long: WeChat takes at most %d", n, MaxSceneBytes)
	case !utf8.ValidString(scene):
		return fmt.Errorf("the scene is not valid UTF-8")
	}
	return nil
}

// CreateQRCode creates a parametric QR code. Scanning it sends the
// subscribe event with EventKey "qrscene_" + the scene to a new follower,
// SCAN with EventKey the scene to a follower.
func (c *Client) CreateQRCode(ctx context.Context, r *QRCodeRequest) (*QRCode, error) {
	if r == nil || r.ActionName == "" {
		return nil, ErrInvalidMessage
	}
	var q QRCode
	if err := c.postJSON(ctx, PathQRCodeCreate, r, &q); err != nil {
		return nil, err
	}
	return &q, nil
}
