package wechat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

func TestRetryable(t *testing.T) {
	netErr := &url.Error{Op: "Post", URL: "https://x", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"system busy", &APIError{Code: -1}, true},
		{"wrapped system busy", fmt.Errorf("send: %w", &APIError{Code: -1}), true},
		{"out of window", &APIError{Code: 45015}, false},
		{"count cap", &APIError{Code: 45047}, false},
		{"token error after the refetch", &APIError{Code: 40001}, false},
		{"http 500", &HTTPError{StatusCode: 500}, true},
		{"http 503", &HTTPError{StatusCode: 503}, true},
		{"http 429", &HTTPError{StatusCode: 429}, true},
		{"http 404", &HTTPError{StatusCode: 404}, false},
		{"network", netErr, true},
		{"timeout", context.DeadlineExceeded, true},
		{"cut answer", io.ErrUnexpectedEOF, true},
		{"cancelled", &url.Error{Op: "Post", URL: "u", Err: context.Canceled}, false},
		{"missing file", fmt.Errorf("%w: %w", ErrMediaFile, os.ErrNotExist), false},
		{"no credentials", ErrNoCredentials, false},
		{"bad json after errcode 0", errors.New("decode answer: invalid character"), false},
		{"malformed answer", &BadAnswerError{API: PathCustomSend, Err: errors.New("invalid character '<'")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestScrubURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://api/x?access_token=ABC.def-1&type=image", "https://api/x?access_token=REDACTED&type=image"},
		{"https://api/cgi-bin/token?appid=wx1&grant_type=client_credential&secret=s3cr3t", "https://api/cgi-bin/token?appid=wx1&grant_type=client_credential&secret=REDACTED"},
		{`Post "https://api/x?access_token=T": dial tcp: refused`, `Post "https://api/x?access_token=REDACTED": dial tcp: refused`},
		{"https://api/x", "https://api/x"},
	}
	for _, tt := range tests {
		if got := scrubURL(tt.in); got != tt.want {
			t.Errorf("scrubURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		_      bool
		reason string
		code   int
	}{
		{"api", &APIError{Code: 43004, Message: "require subscribe"}, false, "user has not followed", 43004},
		{"unknown code", &APIError{Code: 61451, Message: "invalid parameter"}, false, "errcode 61451: invalid parameter", 61451},
		{"http", &HTTPError{StatusCode: 502}, false, "http status 502", 0},
		{"timeout", &url.Error{Op: "Post", URL: "u", Err: context.DeadlineExceeded}, false, "timeout", 0},
		{"network", &url.Error{Op: "Post", URL: "u", Err: errors.New("refused")}, false, "network error", 0},
		{"refused", &url.Error{Op: "Post", URL: "u", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, false, "network error: connection refused", 0},
		{"malformed answer", &BadAnswerError{API: PathCustomSend, Err: errors.New("x")}, false, "malformed answer", 0},
		{"token: whitelist", fmt.Errorf("wechat: access token: %w", &APIError{Code: 40164, API: PathStableToken, Message: "invalid ip"}), false, "access token fetch failed: server IP not whitelisted", 40164},
		{"token: wrong secret (legacy)", &APIError{Code: 40001, API: PathToken}, false, "access token fetch failed: wrong AppSecret", 40001},
		{"token: unknown code", &APIError{Code: 89503, API: PathStableToken, Message: "risky"}, false, "access token fetch failed: errcode 89503: risky", 89503},
		{"token rejected by a send", &APIError{Code: 40001, API: PathCustomSend}, false, "access token rejected", 40001},
		{"text too long", &APIError{Code: 45002, API: PathCustomSend}, false, "content too long", 45002},
		{"media file", fmt.Errorf("%w: open x.jpg: no such file", ErrMediaFile), false, "wechat: media file: open x.jpg: no such file", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, code := Describe(tt.err)
			if reason != tt.reason || code != tt.code {
				t.Errorf("describe = %q, %d; want %q, %d", reason, code, tt.reason, tt.code)
			}
		})
	}
}
