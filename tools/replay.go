package tools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// ReplayOptions configures Replay. URL and Token are required; AESKey
// turns on safe mode and needs AppID.
type ReplayOptions struct {
	URL    string // the server's callback URL
	Token  string // WECHAT_TOKEN
	AESKey string // WECHAT_ENCODING_AES_KEY; empty: plaintext mode
	AppID  string // WECHAT_APPID

	Client *http.Client     // nil: a client with a 15s timeout
	Now    func() time.Time // nil: time.Now
	Stdout io.Writer        // each file's status and answer
	Stderr io.Writer        // each file that failed, and why
}

// Replay posts each captured callback file to the server as WeChat would
// (see Callback.Post) and prints the HTTP status and the answer, with an
// encrypted passive reply decrypted for reading. It goes through every
// file and returns an error when any could not be read or posted or was
// answered with a non-2xx status.
func Replay(ctx context.Context, o ReplayOptions, files ...string) error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	cb, err := o.callback()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("no files to replay")
	}
	failed := 0
	for i, f := range files {
		err := replayFile(ctx, cb, f, o.Stdout)
		if err != nil {
			fmt.Fprintf(o.Stderr, "%s: %v\n", f, err)
			failed++
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isDialError(err) && i+1 < len(files) {
			// The rest would fail the same way, one line each.
			return fmt.Errorf("%d of %d files failed, the other %d not sent: the server is unreachable", failed, len(files), len(files)-i-1)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files failed", failed, len(files))
	}
	return nil
}

func (o ReplayOptions) callback() (*Callback, error) {
	if o.URL == "" {
		return nil, errors.New("-url is required: the server's callback URL, e.g. " + exampleCallbackURL)
	}
	if _, err := checkURL("-url", o.URL, exampleCallbackURL); err != nil {
		return nil, err
	}
	if o.Token == "" {
		return nil, errors.New("WECHAT_TOKEN (or -token) is required: replays are signed with it")
	}
	cb := &Callback{URL: o.URL, Token: o.Token, Client: o.Client, Now: o.Now}
	if o.AESKey != "" {
		if o.AppID == "" {
			return nil, errors.New("WECHAT_APPID (or -appid) is required with an EncodingAESKey: it is sealed into each encrypted message")
		}
		c, err := wechat.NewCipher(o.AESKey, o.AppID)
		if err != nil {
			return nil, fmt.Errorf("WECHAT_ENCODING_AES_KEY: %w", err)
		}
		cb.Cipher = c
	}
	return cb, nil
}

// replayFile posts one file and prints its answer.
func replayFile(ctx context.Context, cb *Callback, name string, out io.Writer) error {
	msg, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	r, err := cb.Post(ctx, msg)
	if r != nil {
		printResult(out, name, r)
	}
	if err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("answered %s", r.Status)
	}
	return nil
}

// printResult writes "FILE: STATUS (TIME)" and the answer below it.
func printResult(out io.Writer, name string, r *CallbackResult) {
	note := ""
	if r.Encrypted {
		note = ", encrypted reply, msg_signature ok"
		if !r.SignatureOK {
			note = ", encrypted reply, msg_signature WRONG"
		}
	}
	fmt.Fprintf(out, "%s: %s (%s%s)\n", name, r.Status, r.Elapsed.Round(time.Millisecond), note)
	body := r.Body
	if r.Encrypted && r.Reply != nil {
		body = r.Reply
	}
	body = bytes.TrimRight(body, "\r\n")
	if len(body) == 0 {
		fmt.Fprintln(out, "(empty body)")
		return
	}
	fmt.Fprintf(out, "%s\n", body)
}
