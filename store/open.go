package store

import (
	"errors"
	"log/slog"
	"strings"
)

// Memory is the WXREPLY_STORE value of the store that keeps nothing
// across restarts: the sandbox's default, and quick tests'.
const Memory = "memory"

// Options are what every store takes besides where it is.
type Options struct {
	Logger *slog.Logger // nil: slog.Default()
}

// Open opens the store that spec names, as WXREPLY_STORE does: "memory",
// a redis:// or rediss:// URL, or else a directory path (created when
// missing). The error never repeats a password of the URL.
func Open(spec string, o Options) (Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case spec == "":
		return nil, errors.New("WXREPLY_STORE is empty: name a directory, memory, or a redis:// URL")
	case spec == Memory:
		return OpenSQLite(SQLiteOptions{Logger: o.Logger})
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		return OpenRedis(RedisOptions{URL: spec, Logger: o.Logger})
	}
	return OpenSQLite(SQLiteOptions{Dir: spec, Logger: o.Logger})
}
