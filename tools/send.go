package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// SendOptions configures Send: one message pushed through a running
// server's /api/v1. Give To and Text for a text message, or JSON alone for
// any customer-service message exactly as message/custom/send takes it, or
// a template message exactly as message/template/send takes it (told
// apart by its template_id), touser included.
type SendOptions struct {
	Server string // the server's base URL, e.g. http://127.0.0.1:8080
	APIKey string // WXREPLY_API_KEY

	To   string // the user's openid, for Text
	Text string
	JSON []byte // the whole message: neither To nor Text goes with it

	IdempotencyKey string // makes a retry of this command safe

	// Wait polls the message's status until it is delivered or failed.
	Wait         bool
	PollInterval time.Duration // default 500ms

	Client *http.Client // nil: a client with a 15s timeout per call
	Stdout io.Writer    // the id, then with Wait the outcome
}

// ErrNotDelivered is returned by Send with Wait when the message failed.
var ErrNotDelivered = errors.New("message not delivered")

// Send posts the message, prints its id and, with Wait, polls until the
// server reports it delivered or failed and prints that. It returns an
// error for a refused message (with the server's explanation), and
// ErrNotDelivered (wrapped with the reason) for a failed one.
func Send(ctx context.Context, o SendOptions) error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: defaultTimeout}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	base, err := checkURL("-server", strings.TrimRight(o.Server, "/"), "http://127.0.0.1:8080 (the server's base URL)")
	if err != nil {
		return err
	}
	if o.APIKey == "" {
		return errors.New("WXREPLY_API_KEY (or -api-key) is required: the key the server was started with")
	}
	body, err := o.message()
	if err != nil {
		return err
	}
	kind := "messages"
	if isTemplate(body) {
		kind = "templates"
	}

	var accepted struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	header := http.Header{"Content-Type": {"application/json"}}
	if o.IdempotencyKey != "" {
		header.Set("Idempotency-Key", o.IdempotencyKey)
	}
	if err := o.call(ctx, http.MethodPost, base.String()+"/api/v1/"+kind, header, body, http.StatusAccepted, &accepted); err != nil {
		return err
	}
	fmt.Fprintln(o.Stdout, accepted.ID)
	if !o.Wait {
		return nil
	}
	return o.wait(ctx, base.String()+"/api/v1/"+kind+"/"+url.PathEscape(accepted.ID))
}

// isTemplate reports a template message: the only kind with a
// template_id. Anything else is posted as a customer-service message,
// whose route explains what is wrong with it.
func isTemplate(body []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	_, ok := m["template_id"]
	return ok
}

// message builds the JSON to post. A -json file is posted as it is: the
// server explains what is wrong with it.
func (o SendOptions) message() ([]byte, error) {
	switch {
	case o.JSON != nil && o.Text != "":
		return nil, errors.New("give a TEXT or -json FILE, not both")
	case o.JSON != nil && o.To != "":
		return nil, errors.New("-to and -json do not go together: the -json file names the user (touser)")
	case o.JSON != nil:
		return o.JSON, nil
	case o.To == "":
		return nil, errors.New("-to OPENID is required: the user to send to")
	case strings.TrimSpace(o.Text) == "":
		return nil, errors.New("nothing to send: give the TEXT, or -json FILE")
	}
	return json.Marshal(wechat.CustomMessage{
		ToUser:  o.To,
		MsgType: wechat.MsgTypeText,
		Text:    &wechat.Text{Content: o.Text},
	})
}

// wait polls the status URL until the message is final. A template
// message is "sent" once WeChat took it; it is final when WeChat's
// delivery report has arrived at the server.
func (o SendOptions) wait(ctx context.Context, statusURL string) error {
	t := time.NewTicker(o.PollInterval)
	defer t.Stop()
	saidSent := false
	var last pushStatus // the status before this poll's
	for {
		var st pushStatus
		if err := o.call(ctx, http.MethodGet, statusURL, nil, nil, http.StatusOK, &st); err != nil {
			if ctx.Err() != nil && last.Status != "" {
				// The wait ran out during a poll.
				return fmt.Errorf("still %s%s: %w", last.Status, last.progress(), ctx.Err())
			}
			return err
		}
		last = st
		switch st.Status {
		case "delivered":
			fmt.Fprintln(o.Stdout, "delivered")
			return nil
		case "failed":
			cause := st.cause()
			fmt.Fprintln(o.Stdout, "failed: "+cause)
			return fmt.Errorf("%w: %s", ErrNotDelivered, cause)
		case "sent":
			if !saidSent {
				fmt.Fprintln(o.Stdout, "sent: waiting for WeChat's delivery report (TEMPLATESENDJOBFINISH)")
				saidSent = true
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s%s: %w", st.Status, st.progress(), ctx.Err())
		case <-t.C:
		}
	}
}

// pushStatus is the push API's status of a message. LastError and ErrMsg
// are read when the server gives them: the cause behind the reason.
type pushStatus struct {
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	ErrCode   int    `json:"errcode"`
	ErrMsg    string `json:"errmsg"`
	LastError string `json:"last_error"`
	Attempts  int    `json:"attempts"`
}

// cause is why a message failed, as fully as the server says: the reason,
// WeChat's errcode, and its errmsg or the last error behind the reason
// (the "connection refused" behind a "network error").
func (st pushStatus) cause() string {
	reason := st.Reason
	if reason == "" {
		reason = "no reason given"
	}
	var more []string
	if st.ErrCode != 0 {
		more = append(more, fmt.Sprintf("errcode %d", st.ErrCode))
	}
	if st.ErrMsg != "" && st.ErrMsg != st.Reason {
		more = append(more, "errmsg "+strconv.Quote(st.ErrMsg))
	}
	if st.LastError != "" && st.LastError != st.Reason && st.LastError != st.ErrMsg {
		more = append(more, "last error: "+st.LastError)
	}
	if len(more) == 0 {
		return reason
	}
	return reason + " (" + strings.Join(more, "; ") + ")"
}

// progress is what a message still under way has been through: its
// attempts, and the error that keeps it waiting.
func (st pushStatus) progress() string {
	var more []string
	if st.Attempts > 0 {
		more = append(more, count(st.Attempts, "attempt"))
	}
	if st.LastError != "" {
		more = append(more, "last error: "+st.LastError)
	}
	if len(more) == 0 {
		return ""
	}
	return " (" + strings.Join(more, "; ") + ")"
}

// apiProblem is the push API's error answer.
type apiProblem struct {
	Error    string `json:"error"`
	Problems []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"problems"`
}

// call makes one API call and decodes a `want` answer into out; any other
// answer becomes an error carrying the server's explanation.
func (o SendOptions) call(ctx context.Context, method, u string, header http.Header, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+o.APIKey)
	resp, err := o.Client.Do(req)
	if err != nil {
		return unreachable(req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode == want {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: answer is not the API's JSON: %w", method, u, err)
		}
		return nil
	}
	var p apiProblem
	if json.Unmarshal(raw, &p) != nil || p.Error == "" {
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %s: is the push API on (WXREPLY_API_KEY set on the server)?", resp.Status, u)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", resp.Status, p.Error)
	for _, pr := range p.Problems {
		fmt.Fprintf(&b, "\n  %s: %s", pr.Path, pr.Message)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		fmt.Fprintf(&b, " (retry after %ss)", ra)
	}
	return errors.New(b.String())
}
