package httpboot

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Token refusal reasons, returned by Tokens.Redeem.
var (
	ErrTokenMissing = errors.New("no token")
	ErrTokenUnknown = errors.New("unknown token")
	ErrTokenNode    = errors.New("token belongs to another node")
	ErrTokenExpired = errors.New("token expired")
	ErrTokenUsed    = errors.New("token already used")
)

// DefaultTokenTTL is how long a config token stays valid.
const DefaultTokenTTL = 15 * time.Minute

// Tokens issues one-time, short-lived tokens bound to a node. Only a hash of
// each token is kept.
type Tokens struct {
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	issued map[[sha256.Size]byte]*tokenEntry
}

type tokenEntry struct {
	node    string
	expires time.Time
	used    bool
}

// NewTokens returns a store whose tokens live ttl (0: DefaultTokenTTL); now
// is the clock (nil: time.Now).
func NewTokens(ttl time.Duration, now func() time.Time) *Tokens {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{ttl: ttl, now: now, issued: make(map[[sha256.Size]byte]*tokenEntry)}
}

// Issue returns a new token for node.
func (t *Tokens) Issue(node string) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.issued {
		// Forget long-dead entries so the map stays small; keep recently
		// expired and used ones so a replay gets the precise reason.
		if now.Sub(e.expires) > t.ttl {
			delete(t.issued, k)
		}
	}
	t.issued[sha256.Sum256([]byte(tok))] = &tokenEntry{node: node, expires: now.Add(t.ttl)}
	return tok, nil
}

// Check reports whether tok would be accepted for node now, without using
// it up. The error says why a token is refused.
func (t *Tokens) Check(node, tok string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.lookup(node, tok)
	return err
}

// Redeem checks tok for node and marks it used. The error says why a token
// is refused.
func (t *Tokens) Redeem(node, tok string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := t.lookup(node, tok)
	if err != nil {
		return err
	}
	e.used = true
	return nil
}

// lookup finds a usable entry for tok and node; t.mu must be held.
func (t *Tokens) lookup(node, tok string) (*tokenEntry, error) {
	if tok == "" {
		return nil, ErrTokenMissing
	}
	e, ok := t.issued[sha256.Sum256([]byte(tok))]
	if !ok {
		return nil, ErrTokenUnknown
	}
	if subtle.ConstantTimeCompare([]byte(e.node), []byte(node)) != 1 {
		return nil, ErrTokenNode
	}
	if e.used {
		return nil, ErrTokenUsed
	}
	if !t.now().Before(e.expires) {
		return nil, ErrTokenExpired
	}
	return e, nil
}
