package allocate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSpread(t *testing.T) {
	deviceOf := func(id string) string { d, _, _ := strings.Cut(id, "::"); return d }
	all := []string{"a::0", "a::1", "a::2", "b::0", "b::1", "b::2", "c::0", "c::1", "c::2"}
	tests := []struct {
		name string
		req  Request
		want []string
		err  string
	}{
		{"one per device first", Request{Available: all, Size: 3}, []string{"a::0", "b::0", "c::0"}, ""},
		{"then the least used", Request{Available: all, Size: 5}, []string{"a::0", "b::0", "c::0", "a::1", "b::1"}, ""},
		{"the device with most free replicas first", Request{Available: []string{"a::2", "b::0", "b::1", "b::2", "c::2"}, Size: 2}, []string{"b::0", "a::2"}, ""},
		{"must-include counts as use", Request{Available: all, MustInclude: []string{"b::1"}, Size: 3}, []string{"b::1", "a::0", "c::0"}, ""},
		{"only one device left", Request{Available: []string{"a::0", "a::1"}, Size: 2}, []string{"a::0", "a::1"}, ""},
		{"too many", Request{Available: all[:2], Size: 3}, nil, "exceeds"},
		{"must-include not available", Request{Available: all[:2], MustInclude: []string{"c::0"}, Size: 1}, nil, "not available"},
		{"size 0", Request{Available: all, Size: 0}, nil, "at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Spread(tc.req, deviceOf)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("Spread(%+v) = %v, %v; want an error with %q", tc.req, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Spread(%+v): %v", tc.req, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Spread(%+v) (-want +got):\n%s", tc.req, diff)
			}
		})
	}
}
