package nodeagent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// repeats remembers the records of the previous and the current discovery
// pass, shared by a handler and those derived from it with WithAttrs.
type repeats struct {
	mu        sync.Mutex
	prev, cur map[string]bool
}

// newPass starts a discovery pass: what the last one logged is what the
// next one keeps quiet about.
func (r *repeats) newPass() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev, r.cur = r.cur, map[string]bool{}
}

// seen records key in the current pass and reports whether the previous
// pass logged it.
func (r *repeats) seen(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		r.cur = map[string]bool{}
	}
	r.cur[key] = true
	return r.prev[key]
}

// onceHandler passes a record on only when the previous discovery pass did
// not log the same record (level, message and attributes): a skipped
// device or an unreadable attribute is reported when it appears and again
// after it was gone for a pass, not on every rescan.
type onceHandler struct {
	next  slog.Handler
	attrs string // the attributes of WithAttrs, formatted
	r     *repeats
}

func (h *onceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *onceHandler) Handle(ctx context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String())
	b.WriteByte('\x00')
	b.WriteString(rec.Message)
	b.WriteByte('\x00')
	b.WriteString(h.attrs)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(a.String())
		b.WriteByte('\x00')
		return true
	})
	if h.r.seen(b.String()) {
		return nil
	}
	return h.next.Handle(ctx, rec)
}

func (h *onceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		b.WriteString(a.String())
		b.WriteByte('\x00')
	}
	return &onceHandler{next: h.next.WithAttrs(as), attrs: b.String(), r: h.r}
}

func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{next: h.next.WithGroup(name), attrs: h.attrs + name + ".", r: h.r}
}
