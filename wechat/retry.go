package wechat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"time"
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

// backoff is the wait before retry number n (1 for the first retry):
// base doubled per retry, capped, with "equal jitter" (half fixed, half
// random) so that workers retrying after one outage spread out.
func backoff(base, maxWait time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + rand.N(half+1)
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

// describe turns the last error of a failed message into its reason and
// errcode. shutdown tells whether the Sender's own context was cancelled.
func describe(err error, shutdown bool) (reason string, errCode int) {
	var ae *APIError
	var he *HTTPError
	var ue *url.Error
	var bad *BadAnswerError
	switch {
	case err == nil:
		return "unknown", 0
	case shutdown && errors.Is(err, context.Canceled):
		return ReasonShutdown, 0
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
		return "network error", 0
	}
	return err.Error(), 0
}
