package bmc

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// Message is the Redfish error message, if the BMC sent one.
	Message string
}

func (e *HTTPError) Error() string {
	var what string
	switch e.Status {
	case 401:
		what = "credentials refused"
	case 403:
		what = "access denied"
	case 503:
		what = "service unavailable"
		if strings.Contains(strings.ToLower(e.Message), "session") {
			what = "session limit reached"
		}
	default:
		what = "bmc error"
	}
	if e.Message != "" {
		return fmt.Sprintf("%s (HTTP %d: %s)", what, e.Status, e.Message)
	}
	return fmt.Sprintf("%s (HTTP %d)", what, e.Status)
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
		msg := ge.Message
		if msg == "" && len(ge.ExtendedInfos) > 0 {
			msg = ge.ExtendedInfos[0].Message
		}
		if msg == "" {
			msg = ge.Error()
			if _, rest, ok := strings.Cut(msg, ": "); ok {
				msg = rest
			}
		}
		return &HTTPError{Status: ge.HTTPReturnedStatusCode, Message: oneLine(msg, 160)}
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
