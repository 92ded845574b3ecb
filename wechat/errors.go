package wechat

import "fmt"

// APIError is an answer from the WeChat API with a non-zero errcode.
// Callers decide what to do with errors.As and the helpers below.
type APIError struct {
	Code    int    // errcode
	Message string // errmsg, as WeChat gave it
	API     string // the API path that answered, e.g. "/cgi-bin/message/custom/send"
}

func (e *APIError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.API, e.Code, e.Message)
}

// WeChat error codes wxreply acts on.
const (
	ErrCodeSystemBusy         = -1
	ErrCodeInvalidCredential  = 40001 // access_token invalid, or AppSecret wrong
	ErrCodeInvalidOpenID      = 40003
	ErrCodeInvalidMediaID     = 40007
	ErrCodeInvalidMsgType     = 40008
	ErrCodeInvalidAccessToken = 40014
	ErrCodeInvalidTemplateID  = 40037
	ErrCodeMissingAccessToken = 41001
	ErrCodeAccessTokenExpired = 42001
	ErrCodeNotFollowed        = 43004
	ErrCodeUserRefused        = 43101
	ErrCodeTooManyArticles    = 45008
	ErrCodeOutOfWindow        = 45015
	ErrCodeOverCountCap       = 45047
	ErrCodeMalformedData      = 47001
	ErrCodeNoAPIPermission    = 48001
)

// IsTokenError reports whether code means the access token must be refetched.
func IsTokenError(code int) bool {
	switch code {
	case ErrCodeInvalidCredential, ErrCodeInvalidAccessToken, ErrCodeMissingAccessToken, ErrCodeAccessTokenExpired:
		return true
	}
	return false
}
