package nodeinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Fetcher downloads from the boot server, retrying what a retry can fix: a
// refused or reset connection, a timeout, a 5xx or 429 answer. Any other
// answer (a 404 for an unknown path, a 403 for a one-time URL already used)
// fails at once: asking again would not change it.
type Fetcher struct {
	// Client makes the requests (default: a client with a 30 s timeout per
	// request).
	Client *http.Client
	// Attempts is how many times a request is tried (default 10).
	Attempts int
	// Backoff is the first pause between attempts; it doubles up to 30 s
	// (default 1 s).
	Backoff time.Duration
	// Progress, when set, receives one line per failed attempt.
	Progress io.Writer
}

func (f Fetcher) defaults() Fetcher {
	if f.Client == nil {
		f.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if f.Attempts <= 0 {
		f.Attempts = 10
	}
	if f.Backoff <= 0 {
		f.Backoff = time.Second
	}
	return f
}

// permanentError is an answer that a retry would not change.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Get returns the body of url.
func (f Fetcher) Get(ctx context.Context, url string) ([]byte, error) {
	f = f.defaults()
	var body []byte
	err := f.Do(ctx, "get "+url, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return permanentError{err}
		}
		resp, err := f.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if err := statusError(resp, b); err != nil {
			return err
		}
		body = b
		return nil
	})
	return body, err
}

// Post sends body to url as text/plain and returns the answer.
func (f Fetcher) Post(ctx context.Context, url string, body []byte) ([]byte, error) {
	f = f.defaults()
	var answer []byte
	err := f.Do(ctx, "post to "+url, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return permanentError{err}
		}
		req.Header.Set("Content-Type", "text/plain")
		resp, err := f.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if err := statusError(resp, b); err != nil {
			return err
		}
		answer = b
		return nil
	})
	return answer, err
}

func statusError(resp *http.Response, body []byte) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	err := fmt.Errorf("%s: %s", resp.Status, msg)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return err
	}
	return permanentError{err}
}

// Do runs op until it succeeds, fails permanently, ctx ends or the attempts
// are used up; what names the operation in messages.
func (f Fetcher) Do(ctx context.Context, what string, op func(context.Context) error) error {
	f = f.defaults()
	wait := f.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		err = op(ctx)
		var perm permanentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return fmt.Errorf("%s: %w", what, err)
		case attempt >= f.Attempts:
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		}
		if f.Progress != nil {
			fmt.Fprintf(f.Progress, "slipway-node: %s: attempt %d of %d failed, retrying in %s: %v\n", what, attempt, f.Attempts, wait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
