package bmc

import (
	"errors"
	"testing"

	"github.com/stmcginnis/gofish/common"
)

func TestParseIPMI(t *testing.T) {
	power := []struct {
		out  string
		want PowerState
		err  bool
	}{
		{"Chassis Power is on\n", PowerOn, false},
		{"Chassis Power is off\n", PowerOff, false},
		{"Error: Unable to establish IPMI v2 / RMCP+ session\n", PowerStateUnknown, true},
	}
	for _, tc := range power {
		got, err := parseIPMIPower(tc.out)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("parseIPMIPower(%q) = %q, %v; want %q, error %v", tc.out, got, err, tc.want, tc.err)
		}
	}
	out := "Device ID                 : 32\nManufacturer ID           : 674\nManufacturer Name         : DELL Inc\nProduct Name              : Unknown (0x100)\n"
	if v, m := parseMCInfo(out); v != "DELL Inc" || m != "" {
		t.Errorf("parseMCInfo(unknown product) = %q, %q; want %q, %q", v, m, "DELL Inc", "")
	}
	out = "Manufacturer Name         : Supermicro\nProduct Name              : X12DPG-QT6\n"
	if v, m := parseMCInfo(out); v != "Supermicro" || m != "X12DPG-QT6" {
		t.Errorf("parseMCInfo() = %q, %q; want Supermicro, X12DPG-QT6", v, m)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{common.ConstructError(401, []byte(`{"error":{"code":"x","message":"Invalid username or password."}}`)),
			"credentials refused (HTTP 401: Invalid username or password.)"},
		{common.ConstructError(503, []byte(`{"error":{"code":"x","message":"The maximum number of user sessions is reached."}}`)),
			"session limit reached (HTTP 503: The maximum number of user sessions is reached.)"},
		{common.ConstructError(500, []byte("<html>\n<body>Internal Server Error</body>\n</html>")),
			"bmc error (HTTP 500: <html>; <body>Internal Server Error</body>; </html>)"},
		{&common.CollectionError{Failures: map[string]error{"/redfish/v1/Systems/1": common.ConstructError(404, nil)}},
			"bmc error (HTTP 404)"},
		{errors.New("line one\nline two"), "line one; line two"},
	}
	for _, tc := range tests {
		if got := describe(tc.err).Error(); got != tc.want {
			t.Errorf("describe(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseBootParam5(t *testing.T) {
	tests := []struct {
		out  string
		want BootOverride
	}{
		{" Boot Flags :\n   - Boot Flag Valid\n   - Options apply to all future boots\n   - BIOS EFI boot \n   - Boot Device Selector : Force PXE\n",
			BootOverride{Device: BootPXE}},
		{" Boot Flags :\n   - Boot Flag Invalid\n   - Options apply to only next boot\n   - BIOS PC Compatible (legacy) boot \n   - Boot Device Selector : Force Boot from default Hard-Drive\n",
			BootOverride{Device: BootDisk}},
		{"   - Boot Device Selector : Force Boot from CD/DVD\n", BootOverride{Device: BootCD}},
		{"   - Options apply to only next boot\n   - BIOS EFI boot \n   - Boot Device Selector : No override\n", BootOverride{}},
	}
	for _, tc := range tests {
		got, err := parseBootParam5(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("parseBootParam5(%q) = %v, %v; want %v", tc.out, got, err, tc.want)
		}
	}
	if _, err := parseBootParam5("Error: Unable to establish IPMI v2 / RMCP+ session"); err == nil {
		t.Errorf("parseBootParam5(an error) = nil error, want one")
	}
}
