package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// healthz answers 200 once the server can take callbacks, 503 before.
func healthz(ready func() bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ready != nil && !ready() {
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
		return c.String(http.StatusOK, "ok\n")
	}
}
