package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/wechat"
)

// Reading a push request: the body decoded strictly, then validated by the
// same code that checks rules.yaml, with errors the caller can act on.

// decodeStrict reads the body (413 over MaxBodyBytes) and decodes it as
// exactly one JSON object with no unknown fields. It returns the body in a
// canonical form (re-encoded) so that retries differing only in spacing
// or key order count as the same request. When ok is false the error
// answer has been written and err is what the handler returns.
func decodeStrict(c echo.Context, v any) (canonical []byte, ok bool, err error) {
	body, err := readBody(c)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, false, writeError(c, he.Code, fmt.Sprint(he.Message))
		}
		return nil, false, writeError(c, http.StatusBadRequest, "reading body failed")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, false, writeError(c, http.StatusBadRequest, "empty body: send the message as JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, false, writeJSONError(c, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, writeError(c, http.StatusBadRequest, "invalid JSON: data after the message object")
	}
	canonical, err = json.Marshal(v)
	if err != nil { // unreachable for these types; kept so no error is ignored
		return nil, false, writeError(c, http.StatusBadRequest, "invalid JSON")
	}
	return canonical, true, nil
}

// writeJSONError answers 400 with what encoding/json found, in terms of
// the message's JSON rather than Go's types.
func writeJSONError(c echo.Context, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return writeError(c, http.StatusBadRequest, fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typ):
		path := typ.Field
		if path == "" {
			path = "(message)"
		}
		return writeJSON(c, http.StatusBadRequest, apiError{
			Error:    "invalid JSON: a field has the wrong type",
			Problems: []Problem{{Path: path, Message: "must be " + jsonKind(typ.Type.Kind().String()) + ", not " + typ.Value}},
		})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return writeError(c, http.StatusBadRequest, "invalid JSON: body ends in the middle of the message")
	}
	// DisallowUnknownFields reports `json: unknown field "x"` as a plain error.
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		field := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
		return writeJSON(c, http.StatusBadRequest, apiError{
			Error:    "invalid JSON: unknown field " + strconv.Quote(field) + " (the body must be exactly what WeChat's API takes)",
			Problems: []Problem{{Path: field, Message: "unknown field"}},
		})
	}
	return writeError(c, http.StatusBadRequest, "invalid JSON: "+msg)
}

// jsonKind names a Go kind the way a JSON author thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "true or false"
	}
	return "a number"
}

// customProblems validates m with the code that checks rules.yaml, plus
// what only a push must have: a recipient.
func customProblems(m *wechat.CustomMessage) []Problem {
	return problems(append(m.ValidateRecipient(), m.Validate()...))
}

// templateProblems is customProblems for template messages.
func templateProblems(m *wechat.TemplateMessage) []Problem {
	return problems(append(m.ValidateRecipient(), m.Validate()...))
}

// problems converts Validate's findings. rules.yaml may name a local file
// instead of a media_id; JSON cannot (file is not a field of WeChat's
// API), so that alternative is not offered to a push.
func problems(fps []wechat.FieldProblem) []Problem {
	ps := make([]Problem, 0, len(fps))
	for _, fp := range fps {
		msg := fp.Msg
		if strings.HasPrefix(msg, "required (or ") {
			msg = "required"
		}
		ps = append(ps, Problem{Path: fp.Path, Message: msg})
	}
	return ps
}

func writeError(c echo.Context, code int, msg string) error {
	return writeJSON(c, code, apiError{Error: msg})
}

func writeProblems(c echo.Context, msg string, ps []Problem) error {
	return writeJSON(c, http.StatusUnprocessableEntity, apiError{Error: msg, Problems: ps})
}

// writeJSON answers v without HTML escaping: the API's errors speak of
// <WXREPLY_API_KEY> and <a href> links, which "\u003c" would garble.
func writeJSON(c echo.Context, code int, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return c.Blob(code, echo.MIMEApplicationJSON, b.Bytes())
}
