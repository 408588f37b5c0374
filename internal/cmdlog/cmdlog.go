package cmdlog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// Flag defaults and help texts, for the commands' flag definitions.
const (
	DefaultLevel  = "info"
	DefaultFormat = "text"
	LevelUsage    = "log level: debug, info, warn or error"
	FormatUsage   = "log format: text or json"
)

// New returns a logger writing to w at level ("debug", "info", "warn" or
// "error") in format ("text" or "json"). A bad value is an error that names
// the flag and the values it takes.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// AtLeast returns log with records below min dropped (nil stays nil).
func AtLeast(log *slog.Logger, min slog.Level) *slog.Logger {
	if log == nil {
		return nil
	}
	return slog.New(minLevel{log.Handler(), min})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}

func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.Handler.WithGroup(n), m.min} }
