package bmc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"

	"github.com/stmcginnis/gofish/common"
)

// HTTPError is an HTTP error status a Redfish BMC answered with.
type HTTPError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the Redfish error message, if the BMC sent one: the
	// @Message.ExtendedInfo messages when the top-level message is a
	// generic "see ExtendedInfo".
	Message string
	// MessageIDs are the MessageId values of the error and its
	// @Message.ExtendedInfo entries.
	MessageIDs []string
}

// SessionLimit reports whether the BMC refused for its session limit
// (Redfish SessionLimitExceeded, iDRAC RAC0218, or a message that says so),
// whatever the status code.
func (e *HTTPError) SessionLimit() bool {
	for _, id := range e.MessageIDs {
		if strings.HasSuffix(id, "SessionLimitExceeded") || strings.HasSuffix(id, "RAC0218") {
			return true
		}
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "maximum number of user sessions") || strings.Contains(m, "session limit")
}

func (e *HTTPError) Error() string {
	var what string
	switch {
	case e.SessionLimit():
		what = "session limit reached"
	case e.Status == 401:
		what = "credentials refused"
	case e.Status == 403:
		what = "access denied"
	case e.Status == 503:
		what = "service unavailable"
	default:
		what = "bmc error"
	}
	if e.Message != "" {
		return fmt.Sprintf("%s (HTTP %d: %s)", what, e.Status, e.Message)
	}
	return fmt.Sprintf("%s (HTTP %d)", what, e.Status)
}

// genericMessage is a top-level Redfish error message that only points at
// @Message.ExtendedInfo ("A general error has occurred. See ExtendedInfo
// for more information.", iLO's "See @Message.ExtendedInfo ...").
func genericMessage(m string) bool {
	l := strings.ToLower(m)
	return m == "" || strings.Contains(l, "extendedinfo") || strings.Contains(l, "general error")
}

// errorText is what a Redfish error says: the ExtendedInfo messages (with
// their resolutions) when the top-level message is generic, otherwise the
// top-level message followed by any ExtendedInfo message that adds to it.
func errorText(ge *common.Error) string {
	var parts []string
	if !genericMessage(ge.Message) {
		parts = append(parts, ge.Message)
	}
	for _, e := range ge.ExtendedInfos {
		if e.Message == "" {
			continue
		}
		i := slices.Index(parts, e.Message)
		if i < 0 {
			parts = append(parts, e.Message)
			i = len(parts) - 1
		}
		if e.Resolution != "" {
			parts[i] += " (" + strings.TrimSuffix(e.Resolution, ".") + ")"
		}
	}
	if len(parts) == 0 && ge.Message != "" {
		parts = append(parts, ge.Message)
	}
	return strings.Join(parts, "; ")
}

// describe turns an error from bmclib, gofish, net/http or ipmitool into a
// short one-line cause.
func describe(err error) error {
	var ce *common.CollectionError
	if errors.As(err, &ce) {
		// gofish reports a failed member of a collection as JSON of every
		// failure; one is enough to say what happened.
		for _, link := range slices.Sorted(maps.Keys(ce.Failures)) {
			return describe(ce.Failures[link])
		}
	}
	var ge *common.Error
	if errors.As(err, &ge) && ge.HTTPReturnedStatusCode != 0 {
		msg := errorText(ge)
		if msg == "" {
			msg = ge.Error()
			if _, rest, ok := strings.Cut(msg, ": "); ok {
				msg = rest
			}
		}
		he := &HTTPError{Status: ge.HTTPReturnedStatusCode, Message: oneLine(msg, 240)}
		if ge.Code != "" {
			he.MessageIDs = append(he.MessageIDs, ge.Code)
		}
		for _, e := range ge.ExtendedInfos {
			if e.MessageID != "" {
				he.MessageIDs = append(he.MessageIDs, e.MessageID)
			}
		}
		return he
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("malformed JSON from bmc: %s", oneLine(err.Error(), 160))
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) || strings.Contains(err.Error(), "unexpected end of JSON input") {
		return fmt.Errorf("malformed JSON from bmc: %s", oneLine(err.Error(), 160))
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("connection refused (is the bmc address and port right, and the bmc up?): %w", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL repeats the bmc address the OpError already names.
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %s", oneLine(err.Error(), 160))
	}
	if msg := oneLine(err.Error(), 240); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// oneLine joins lines with "; " and cuts the text at max bytes.
func oneLine(s string, max int) string {
	s = strings.TrimSpace(s)
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	s = strings.Join(fields, "; ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
