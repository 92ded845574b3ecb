package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxreply/wxreply/rules"
)

// Webhooks calls the webhook reply items of a decision: it signs each
// request with WXREPLY_WEBHOOK_SECRET, waits at most the item's timeout,
// and checks the answer with the rules' own validation; on a timeout, a
// non-2xx answer or an invalid item it gives the rule's fallback instead.
//
// The call is made inside the callback, before the replies are recorded:
// its answer can then be the passive reply (for accounts without the
// customer-service API), and "accepted means recorded" holds for it as
// for any reply. Its timeout (default 3s, at most 4s, checked when the
// rules load) keeps the callback within WeChat's 5 seconds.
type Webhooks struct {
	Secret string
	Client *http.Client // nil: a client of its own
	Logger *slog.Logger
	Now    func() time.Time

	calls *prometheus.CounterVec // wxreply_webhook_calls_total (metrics.go)
}

// Outcomes of a webhook call, the outcome label of
// wxreply_webhook_calls_total.
const (
	WebhookOK      = "ok"
	WebhookTimeout = "timeout"
	WebhookStatus  = "status"  // a non-2xx answer
	WebhookInvalid = "invalid" // not JSON, or an item that does not validate
	WebhookError   = "error"   // the request could not be made
)

// Header names of a webhook request.
const (
	HeaderWebhookTimestamp = "X-Wxreply-Timestamp"
	HeaderWebhookSignature = "X-Wxreply-Signature"
)

// SignWebhook is the X-Wxreply-Signature value of a request: "sha256=" and
// the hex HMAC-SHA256 of timestamp + "." + body under secret.
func SignWebhook(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func newWebhooks(secret string, log *slog.Logger, now func() time.Time) *Webhooks {
	return &Webhooks{
		Secret: secret, Logger: log, Now: now,
		// No overall timeout here: each call has its item's.
		Client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		calls:  webhookCalls(),
	}
}

// warnUnsignedWebhooks logs a reloaded rules file that brought webhook
// items to a server without the secret: they send their fallbacks.
func warnUnsignedWebhooks(log *slog.Logger, secret string, s *rules.Set) {
	if names := s.WebhookRules(); secret == "" && len(names) > 0 {
		log.Error("WXREPLY_WEBHOOK_SECRET is not set: the reloaded rules' webhook items send their fallbacks until it is and the server restarts",
			"rule", strings.Join(names, ","))
	}
}

// Resolve calls every webhook of d, at the same time, and puts each one's
// replies (or its fallback's) in d in place of its item, order kept.
func (w *Webhooks) Resolve(ctx context.Context, d *rules.Decision) {
	if len(d.Webhooks) == 0 {
		return
	}
	answers := make([]rules.Replies, len(d.Webhooks))
	var wg sync.WaitGroup
	for i, call := range d.Webhooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = w.resolve(ctx, call)
		}()
	}
	wg.Wait()
	// From the last call back, so that each At still points where it did.
	for i := len(d.Webhooks) - 1; i >= 0; i-- {
		call, a := d.Webhooks[i], answers[i]
		d.Replies = append(d.Replies[:call.At:call.At], append(a.Items, d.Replies[call.At:]...)...)
		if call.Passive {
			d.Passive, d.Transfer = a.Passive, a.Transfer
		}
	}
	d.Webhooks = nil
}

func (w *Webhooks) resolve(ctx context.Context, call *rules.WebhookCall) rules.Replies {
	replies, outcome, err := w.call(ctx, call)
	if w.calls != nil {
		w.calls.WithLabelValues(call.Rule, outcome).Inc()
	}
	if err == nil {
		return replies
	}
	target := call.URL
	if u, perr := url.Parse(call.URL); perr == nil {
		target = u.Redacted() // a password in the URL is not logged
	}
	w.Logger.WarnContext(ctx, "webhook failed: sending the rule's fallback", "rule", call.Rule, "outcome", outcome,
		"url", target, "error", err.Error())
	return call.Fallback()
}

func (w *Webhooks) call(ctx context.Context, call *rules.WebhookCall) (rules.Replies, string, error) {
	if w.Secret == "" {
		return rules.Replies{}, WebhookError, errors.New("WXREPLY_WEBHOOK_SECRET is not set: requests are not sent unsigned")
	}
	ctx, cancel := context.WithTimeout(ctx, call.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, call.URL, bytes.NewReader(call.Body))
	if err != nil {
		return rules.Replies{}, WebhookError, err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderWebhookTimestamp, ts)
	req.Header.Set(HeaderWebhookSignature, SignWebhook(w.Secret, ts, call.Body))
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return rules.Replies{}, failure(ctx, err), err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return rules.Replies{}, WebhookStatus, fmt.Errorf("answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, rules.MaxWebhookAnswer+1))
	switch {
	case err != nil:
		return rules.Replies{}, failure(ctx, err), fmt.Errorf("reading the answer: %w", err)
	case len(body) > rules.MaxWebhookAnswer:
		return rules.Replies{}, WebhookInvalid, fmt.Errorf("the answer is over %d bytes", rules.MaxWebhookAnswer)
	}
	replies, err := call.Answer(body)
	if err != nil {
		return rules.Replies{}, WebhookInvalid, err
	}
	return replies, WebhookOK, nil
}

// failure is the outcome of a request that failed with err.
func failure(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return WebhookTimeout
	}
	return WebhookError
}
