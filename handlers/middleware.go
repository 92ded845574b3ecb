package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// requestLog writes one structured line per request. It logs the path and
// the openid WeChat puts in the query, never the query string itself: the
// signatures in it are useless to a reader and the push API's callers may
// put anything there. A callback's line is its only one ("callback"): the
// request, and what came of it (the sender, the message, the rules that
// answered, the outcome; see Note).
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus:    true,
		LogLatency:   true,
		LogMethod:    true,
		LogURIPath:   true,
		LogRequestID: true,
		LogRemoteIP:  true,
		LogError:     true,
		HandleError:  true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelError
			} else if v.Status >= 400 {
				level = slog.LevelWarn
			}
			ctx := c.Request().Context()
			if !log.Enabled(ctx, level) {
				return nil
			}
			var buf [20]slog.Attr
			attrs := append(buf[:0],
				slog.String("method", v.Method),
				slog.String("path", capped(v.URIPath, 256)),
				slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency),
				slog.String("request_id", v.RequestID),
				slog.String("remote_ip", v.RemoteIP),
			)
			msg := "http request"
			if st := callbackOf(c); st != nil {
				msg = "callback"
				attrs = appendCallbackAttrs(attrs, st, v.Status)
			} else if openid := c.QueryParam("openid"); openid != "" && c.Get(signedKey) == true {
				// The query's openid only once the signature held: anyone
				// can put one there, and a forged line under a real user's
				// openid would pollute a grep of their conversation.
				attrs = append(attrs, slog.String("openid", capped(openid, 64)))
			}
			if v.Error != nil {
				attrs = append(attrs, slog.String("error", v.Error.Error()))
			}
			log.LogAttrs(ctx, level, msg, attrs...)
			return nil
		},
	})
}

// recoverPanics turns a panic into a logged 500 with the request id, so one
// bad request never takes the process down.
func recoverPanics(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error("panic in handler",
						"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
						"path", c.Request().URL.Path,
						"panic", fmt.Sprint(r),
						"stack", string(debug.Stack()))
					err = echo.NewHTTPError(http.StatusInternalServerError, "internal error")
				}
			}()
			return next(c)
		}
	}
}

// errorHandler answers errors as short plain text. WeChat reads nothing
// but the status, and plain text keeps curl sessions readable.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code := http.StatusInternalServerError
		msg := http.StatusText(code)
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
			msg = fmt.Sprint(he.Message)
		}
		if code >= 400 && c.Request().ContentLength != 0 {
			// The body may be unread (a bad signature is refused before
			// reading it). Closing the connection lets the answer go out
			// now; otherwise the server would first wait for the rest of
			// the body to reuse the connection, and a client still
			// sending would get no answer until its read timeout.
			c.Response().Header().Set(echo.HeaderConnection, "close")
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(code)
		} else {
			err = c.String(code, msg+"\n")
		}
		if err != nil {
			log.Debug("writing error response", "error", err)
		}
	}
}

// signedKey marks, in the Echo context, a request whose signature held.
const signedKey = "wxreply.signed"

// capped is s cut to at most n bytes, for log lines an outsider fills.
func capped(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
