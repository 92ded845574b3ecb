package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// healthz answers 200 while the server can take callbacks, and 503 with
// the reason while it cannot (rules not loaded, the store not writable).
func healthz(health func() error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if health != nil {
			if err := health(); err != nil {
				return c.String(http.StatusServiceUnavailable, "unavailable: "+err.Error()+"\n")
			}
		}
		return c.String(http.StatusOK, "ok\n")
	}
}
