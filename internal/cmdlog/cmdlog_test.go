package cmdlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level, format string
		wantErr       string
		wantOut       string // after one Debug and one Info line
	}{
		{"info", "text", "", "level=INFO msg=shown"},
		{"debug", "text", "", "level=DEBUG msg=hidden"},
		{"warn", "json", "", ""},
		{"info", "json", "", `"msg":"shown"`},
		{"loud", "text", `--log-level "loud": want debug, info, warn or error`, ""},
		{"info", "xml", `--log-format "xml": want text or json`, ""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		log, err := New(&b, tt.level, tt.format)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("New(%q, %q) error = %v, want %q", tt.level, tt.format, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("New(%q, %q): %v", tt.level, tt.format, err)
		}
		log.Debug("hidden")
		log.Info("shown")
		if !strings.Contains(b.String(), tt.wantOut) || (tt.wantOut == "" && b.Len() > 0) {
			t.Errorf("New(%q, %q) wrote %q, want it to contain %q", tt.level, tt.format, b.String(), tt.wantOut)
		}
	}
}

func TestAtLeast(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := AtLeast(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelWarn)
	log.With("node", "n1").Info("dropped")
	log.WithGroup("g").Warn("kept")
	if got := b.String(); strings.Contains(got, "dropped") || !strings.Contains(got, "kept") {
		t.Errorf("AtLeast(warn) wrote %q, want only the warning", got)
	}
	if AtLeast(nil, slog.LevelWarn) != nil {
		t.Error("AtLeast(nil) != nil")
	}
}
