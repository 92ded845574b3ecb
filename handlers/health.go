package handlers

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// healthz answers 200 while the server can take callbacks, and 503 with
// the reason while it cannot (rules not loaded, the store not writable).
//
// WeChat's own health never changes the status: every instance sends
// through the same WeChat, so failing readiness for it would take them
// all out of the balancer and turn an outage of WeChat's API into 503s to
// WeChat's callbacks, which WeChat gives up on after three tries — while
// the replies, recorded in the store, would have waited for WeChat to come
// back. How sending goes is shown instead: with ?verbose=1 the answer is a
// HealthReport in JSON (the same status code), and the metrics carry
// wxreply_last_delivery_timestamp_seconds for alerts.
func healthz(health func() error, report func(context.Context) HealthReport) echo.HandlerFunc {
	return func(c echo.Context) error {
		var err error
		if health != nil {
			err = health()
		}
		code := http.StatusOK
		if err != nil {
			code = http.StatusServiceUnavailable
		}
		if verbose, _ := strconv.ParseBool(c.QueryParam("verbose")); verbose && report != nil {
			r := report(c.Request().Context())
			r.Status = "ok"
			if err != nil {
				r.Status, r.Error = "unavailable", err.Error()
			}
			return c.JSON(code, r)
		}
		if err != nil {
			return c.String(code, "unavailable: "+err.Error()+"\n")
		}
		return c.String(code, "ok\n")
	}
}

// HealthReport is the answer of GET /healthz?verbose=1: whether the
// server takes callbacks and why not, and the state of its store, rules
// and sending, for an operator to read. Times are RFC 3339; a time never
// reached is left out.
type HealthReport struct {
	Status  string        `json:"status"`          // "ok" or "unavailable" (503)
	Error   string        `json:"error,omitempty"` // why unavailable
	Store   StoreHealth   `json:"store"`
	Rules   RulesHealth   `json:"rules"`
	Sending SendingHealth `json:"sending"`
}

// StoreHealth is the store's part of a HealthReport.
type StoreHealth struct {
	Writable bool   `json:"writable"`
	Error    string `json:"error,omitempty"` // why it cannot be written
	// Pending is what waits in the outbox over every instance on the
	// store; -1 when the store cannot be read.
	Pending int `json:"pending"`
}

// RulesHealth is the rules' part of a HealthReport.
type RulesHealth struct {
	Hash           string     `json:"hash"`  // the rules in force, as the "rules loaded" log line names them
	Count          int        `json:"count"` // rules in force, the default not counted
	LoadedAt       *time.Time `json:"loaded_at,omitempty"`
	ReloadFailures int64      `json:"reload_failures"` // reloads refused since the start
	LastFailureAt  *time.Time `json:"last_reload_failure_at,omitempty"`
}

// SendingHealth is how this instance's sends ended lately. A WeChat
// outage shows as a last delivery that grows old while messages are
// pending (they wait in the store, retried, rather than fail); an account
// whose every send is refused shows failures in a row and the reason.
type SendingHealth struct {
	LastDeliveryAt *time.Time `json:"last_delivery_at,omitempty"` // left out: none since the start
	// FailuresInARow counts the messages that ended failed since the
	// last delivery, whatever the reason.
	FailuresInARow  int64      `json:"failures_in_a_row"`
	LastFailureAt   *time.Time `json:"last_failure_at,omitempty"`
	LastFailure     string     `json:"last_failure_reason,omitempty"`
	LastFailureCode int        `json:"last_failure_errcode,omitempty"`
	InFlight        int64      `json:"in_flight"`    // send calls under way now
	TokenPaused     bool       `json:"token_paused"` // WeChat refuses the tokens it issued: calls wait
}
