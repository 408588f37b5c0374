package inventory

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// SecretRef refers to a secret without holding it: "env:NAME" reads the
// environment variable NAME, "file:/path" reads the file (trailing newline
// trimmed). The zero SecretRef refers to nothing.
type SecretRef struct {
	// Source is "env" or "file".
	Source string
	// Name is the variable name or the file path.
	Name string
}

// ParseSecretRef parses "env:NAME" or "file:/path". Anything else is refused
// with an error that says how to write a reference, because an inline value
// would put a secret into git. NAME must be a valid environment variable
// name and the path absolute (a relative one would depend on the directory
// the provisioner happens to run in). No error repeats the value: what
// follows env: or file: may be a mistyped password.
func ParseSecretRef(s string) (SecretRef, error) {
	src, name, ok := strings.Cut(s, ":")
	switch {
	case ok && src == "env" && name != "":
		if !envNameRE.MatchString(name) {
			return SecretRef{}, errors.New("env: needs an environment variable name (letters, digits and '_', not starting with a digit), such as env:RACK_BMC_PASSWORD")
		}
		return SecretRef{Source: "env", Name: name}, nil
	case ok && src == "file" && name != "":
		if !filepath.IsAbs(name) {
			return SecretRef{}, errors.New("file: needs an absolute path, such as file:/etc/slipway/secrets/rack-bmc: a relative path would depend on the directory the provisioner runs in")
		}
		return SecretRef{Source: "file", Name: name}, nil
	}
	return SecretRef{}, errors.New("inline secrets are not allowed in the inventory: write a reference, env:VARIABLE or file:/path/to/secret")
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// IsZero reports whether the reference is empty.
func (r SecretRef) IsZero() bool { return r.Source == "" }

// String returns the reference itself ("env:NAME"), never the secret.
func (r SecretRef) String() string {
	if r.IsZero() {
		return ""
	}
	return r.Source + ":" + r.Name
}

// MarshalText implements encoding.TextMarshaler with the reference form.
func (r SecretRef) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Resolve reads the secret the reference points to. The error names the
// reference, never a value.
func (r SecretRef) Resolve() (Secret, error) {
	switch r.Source {
	case "env":
		v, ok := os.LookupEnv(r.Name)
		if !ok || v == "" {
			return Secret{}, fmt.Errorf("resolve secret %s: environment variable %s is not set", r, r.Name)
		}
		return NewSecret(v), nil
	case "file":
		b, err := os.ReadFile(r.Name)
		if err != nil {
			return Secret{}, fmt.Errorf("resolve secret %s: %w", r, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return Secret{}, fmt.Errorf("resolve secret %s: file is empty", r)
		}
		return NewSecret(v), nil
	case "":
		return Secret{}, errors.New("resolve secret: no reference given (set password: env:NAME or file:/path)")
	}
	return Secret{}, fmt.Errorf("resolve secret %s: unknown source %q", r, r.Source)
}

// Secret holds a secret value. It prints as [redacted] in every format so a
// log line or error can never leak it; Reveal returns the value. The value
// sits behind a pointer, so even a struct that holds a Secret in an
// unexported field (which fmt prints by reflection, without calling String)
// shows an address, not the secret.
type Secret struct{ p *string }

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{p: &v} }

// Reveal returns the secret value ("" for the zero Secret). Call it only
// where the value is handed to the peer that needs it.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// String returns "[redacted]".
func (s Secret) String() string { return "[redacted]" }

// GoString returns "[redacted]" so %#v does not leak either.
func (s Secret) GoString() string { return "[redacted]" }

// MarshalText returns "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }
