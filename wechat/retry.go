package wechat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
)

// Retryable reports whether a failed call is worth repeating: WeChat's
// -1 (system busy), an HTTP 5xx or 429, a malformed answer, a timeout or
// a network error.
// Every other answer is final for that message: repeating it would get
// the same answer, or (45047, 45015) make things worse. Token errors are
// not retryable here because the Client already refetched and retried.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var refused *TokenRefusedError
	if errors.As(err, &refused) {
		return true // the pause ends; the message waits in the outbox
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == ErrCodeSystemBusy
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 500 || he.StatusCode == 429
	}
	var bad *BadAnswerError
	if errors.As(err, &bad) {
		return true
	}
	if errors.Is(err, ErrMediaFile) || errors.Is(err, ErrNoCredentials) || errors.Is(err, ErrInvalidMessage) {
		return false
	}
	// Transport errors only: *url.Error wraps every failure of an HTTP
	// call. A bare net.Error test would also match syscall.Errno, and so
	// a missing file.
	var ue *url.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &oe) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}

// reasonFor names WeChat's answers in the words a log reader needs.
func reasonFor(ae *APIError) string {
	if ae.API == PathToken || ae.API == PathStableToken {
		return "access token fetch failed: " + tokenReason(ae)
	}
	switch ae.Code {
	case ErrCodeSystemBusy:
		return "system busy"
	case ErrCodeInvalidOpenID:
		return "invalid openid"
	case ErrCodeInvalidMediaID:
		return "invalid media_id"
	case ErrCodeInvalidMsgType:
		return "invalid message type"
	case ErrCodeInvalidMediaType:
		return "invalid media type"
	case ErrCodeInvalidFileType:
		return "invalid file type"
	case ErrCodeInvalidFileSize, 40009, 40010, 40011, 40012: // per-type size limits
		return "invalid file size"
	case ErrCodeMediaDataMissing:
		return "media data missing"
	case ErrCodeContentTooLong:
		return "content too long"
	case ErrCodeDailyQuota:
		return "daily quota spent"
	case ErrCodeRateLimited:
		return "rate limited"
	case ErrCodeInvalidTemplateID:
		return "invalid template_id"
	case ErrCodeNotFollowed:
		return "user has not followed"
	case ErrCodeUserRefused:
		return "user refused the message"
	case ErrCodeTooManyArticles:
		return "too many articles"
	case ErrCodeOutOfWindow:
		return ReasonOutOfWindow
	case ErrCodeOverCountCap:
		return "over the count cap"
	case ErrCodeMalformedData:
		return "malformed data"
	case ErrCodeNoAPIPermission:
		return "account lacks this API"
	}
	if IsTokenError(ae.Code) {
		return "access token rejected"
	}
	return fmt.Sprintf("errcode %d: %s", ae.Code, ae.Message)
}

// tokenReason names a token API's errcode.
func tokenReason(ae *APIError) string {
	switch ae.Code {
	case ErrCodeSystemBusy:
		return "system busy"
	case ErrCodeInvalidCredential, ErrCodeInvalidAppSecret:
		return "wrong AppSecret"
	case ErrCodeInvalidAppID:
		return "wrong AppID"
	case ErrCodeIPNotWhitelisted:
		return "server IP not whitelisted"
	case ErrCodeDailyQuota, ErrCodeRateLimited:
		return "token API quota spent"
	}
	return fmt.Sprintf("errcode %d: %s", ae.Code, ae.Message)
}

// Describe turns the last error of a failed message into its reason, in
// the words a log reader needs, and WeChat's errcode (0 when the error
// is not an answer of WeChat's).
func Describe(err error) (reason string, errCode int) {
	var ae *APIError
	var he *HTTPError
	var ue *url.Error
	var bad *BadAnswerError
	switch {
	case err == nil:
		return "unknown", 0
	case errors.As(err, &ae):
		return reasonFor(ae), ae.Code
	case errors.As(err, &he):
		return fmt.Sprintf("http status %d", he.StatusCode), 0
	case errors.As(err, &bad):
		return "malformed answer", 0
	case errors.Is(err, ErrMediaFile):
		return err.Error(), 0
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ue) && ue.Timeout():
		return "timeout", 0
	case errors.As(err, &ue):
		return networkReason(ue), 0
	}
	return err.Error(), 0
}

// ReasonOutOfWindow is the reason of a customer-service message to a user
// outside the 48-hour window: WeChat's 45015, or known before the call.
const ReasonOutOfWindow = "out of window"

// networkReason names a failed HTTP call's cause when the system gave one
// (connection refused, reset, no such host), so that a status says more
// than the log line's "network error" alone.
func networkReason(ue *url.Error) string {
	var dns *net.DNSError
	switch {
	case errors.Is(ue, syscall.ECONNREFUSED):
		return "network error: connection refused"
	case errors.Is(ue, syscall.ECONNRESET):
		return "network error: connection reset"
	case errors.Is(ue, syscall.EHOSTUNREACH), errors.Is(ue, syscall.ENETUNREACH):
		return "network error: host unreachable"
	case errors.As(ue, &dns):
		return "network error: cannot resolve " + dns.Name
	case errors.Is(ue, io.EOF), errors.Is(ue, io.ErrUnexpectedEOF):
		return "network error: connection closed by the server"
	}
	return "network error"
}
