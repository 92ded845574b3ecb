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
	ErrCodeInvalidMediaType   = 40004 // media/upload: type is not image, voice, video or thumb
	ErrCodeInvalidFileType    = 40005 // media/upload: the file's format is not allowed for the type
	ErrCodeInvalidFileSize    = 40006
	ErrCodeInvalidMediaID     = 40007
	ErrCodeInvalidMsgType     = 40008
	ErrCodeInvalidAppID       = 40013
	ErrCodeInvalidAccessToken = 40014
	ErrCodeInvalidTemplateID  = 40037
	ErrCodeInvalidAppSecret   = 40125 // token APIs: wrong AppSecret
	ErrCodeIPNotWhitelisted   = 40164 // token APIs: the server's IP is not on the account's whitelist
	ErrCodeMissingAccessToken = 41001
	ErrCodeMediaDataMissing   = 41005 // media/upload: no multipart field "media"
	ErrCodeAccessTokenExpired = 42001
	ErrCodeNotFollowed        = 43004
	ErrCodeUserRefused        = 43101
	ErrCodeContentTooLong     = 45002 // text content over 2048 bytes
	ErrCodeTooManyArticles    = 45008
	ErrCodeDailyQuota         = 45009 // the API's daily quota is spent
	ErrCodeRateLimited        = 45011 // too many calls in a short time
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
