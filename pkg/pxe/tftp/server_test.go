package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"

	"github.com/slipway-dev/slipway/internal/servetest"
)

// recorder is a Sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []bootevent.Event
}

func (r *recorder) Publish(e bootevent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []bootevent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bootevent.Event(nil), r.events...)
}

// waitFor polls until an event of kind for path arrives: the server
// publishes after the last ACK, which the client does not wait for.
func (r *recorder) waitFor(t *testing.T, kind bootevent.Kind, path string) bootevent.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range r.all() {
			if e.Kind == kind && e.Path == path {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s event for %q; got %+v", kind, path, r.all())
	return bootevent.Event{}
}

// lab builds a root with a binary, a nested file, a symlink inside the root
// and one that escapes it, plus a secret outside the root.
func lab(t *testing.T) (root string, payload []byte) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	payload = make([]byte, 300_000)
	rand.Read(payload)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "undionly.kpxe"), payload, 0o644))
	must(os.WriteFile(filepath.Join(root, "sub", "snponly.efi"), []byte("efi"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644))
	must(os.Symlink("undionly.kpxe", filepath.Join(root, "inside-link")))
	must(os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "abs-escape")))
	must(os.Symlink("../secret", filepath.Join(root, "rel-escape")))
	must(os.Symlink("..", filepath.Join(root, "parent")))
	return root, payload
}

func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	servetest.Start(t, s)
	return s, s.Addr().String()
}

func get(t *testing.T, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(2)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, 0, err
	}
	return b.Bytes(), size, nil
}

func TestServesFiles(t *testing.T) {
	root, payload := lab(t)
	rec := &recorder{}
	node := inventory.Node{Name: "n1", MAC: inventory.HardwareAddr{0x52, 0x54, 0, 0x77, 0, 0x10}, IP: netip.MustParseAddr("127.0.0.1")}
	_, addr := start(t, Config{Root: root, Events: rec, NodeByIP: func(ip netip.Addr) (inventory.Node, bool) { return node, ip == node.IP }})
	tests := []struct {
		name    string
		blksize int
		want    []byte
	}{
		{"undionly.kpxe", 0, payload},
		{"undionly.kpxe", 1468, payload},
		{"undionly.kpxe", 8192, payload},
		{"sub/snponly.efi", 0, []byte("efi")},
		{"inside-link", 1468, payload},
	}
	for _, tt := range tests {
		got, size, err := get(t, addr, tt.name, tt.blksize)
		if err != nil {
			t.Fatalf("get %s (blksize %d): %v", tt.name, tt.blksize, err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("get %s (blksize %d): %d bytes differ from the %d in the file", tt.name, tt.blksize, len(got), len(tt.want))
		}
		if size != int64(len(tt.want)) {
			t.Errorf("get %s: tsize = %d, want %d", tt.name, size, len(tt.want))
		}
	}
	e := rec.waitFor(t, bootevent.TFTPServed, "sub/snponly.efi")
	e.Time = time.Time{}
	if diff := cmp.Diff(bootevent.Event{Kind: bootevent.TFTPServed, Node: "n1", MAC: net.HardwareAddr(node.MAC), IP: node.IP, Path: "sub/snponly.efi", Bytes: 3}, e, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("served event (-want +got):\n%s", diff)
	}
}

// TestOptionNegotiation speaks raw TFTP to see the OACK the server sends.
func TestOptionNegotiation(t *testing.T) {
	root, _ := lab(t)
	_, addr := start(t, Config{Root: root, MaxBlockSize: 1400})
	tests := []struct {
		name string
		opts []string
		want string
	}{
		{"blksize and tsize", []string{"blksize", "1024", "tsize", "0"}, "blksize=1024 tsize=300000"},
		{"blksize capped", []string{"blksize", "9000"}, "blksize=1400"},
		{"tsize only", []string{"tsize", "0"}, "tsize=300000"},
		{"unknown option dropped", []string{"tsize", "0", "foo", "1"}, "tsize=300000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("udp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pkt := []byte{0, 1}
			for _, f := range append([]string{"undionly.kpxe", "octet"}, tt.opts...) {
				pkt = append(append(pkt, f...), 0)
			}
			// The answer comes from the transfer's own port: read with a
			// plain socket bound to our local address.
			local := c.LocalAddr().(*net.UDPAddr)
			c.Close()
			l, err := net.ListenUDP("udp4", local)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ua, _ := net.ResolveUDPAddr("udp4", addr)
			if _, err := l.WriteToUDP(pkt, ua); err != nil {
				t.Fatal(err)
			}
			l.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 1500)
			n, from, err := l.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("no OACK: %v", err)
			}
			if buf[1] != 6 {
				t.Fatalf("got opcode %d, want OACK (6)", buf[1])
			}
			fields := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
			m := map[string]string{}
			for i := 0; i+1 < len(fields); i += 2 {
				m[fields[i]] = fields[i+1]
			}
			var got []string
			for _, k := range []string{"blksize", "tsize"} {
				if v, ok := m[k]; ok {
					got = append(got, k+"="+v)
				}
			}
			if diff := cmp.Diff(tt.want, strings.Join(got, " ")); diff != "" {
				t.Errorf("OACK for %v (-want +got):\n%s", tt.opts, diff)
			}
			// Send ERROR so the server drops the transfer at once.
			l.WriteToUDP([]byte{0, 5, 0, 0, 'x', 0}, from)
		})
	}
}

func TestRefusals(t *testing.T) {
	root, _ := lab(t)
	rec := &recorder{}
	_, addr := start(t, Config{Root: root, Events: rec, Timeout: 500 * time.Millisecond, Retries: 1})
	for _, name := range []string{
		"../secret",
		"sub/../../secret",
		"/etc/passwd",
		"abs-escape",
		"rel-escape",
		"parent/secret",
		"sub",
		"missing.efi",
		`..\secret`,
	} {
		got, _, err := get(t, addr, name, 0)
		if err == nil {
			t.Errorf("get %q = %d bytes (%q), want an error", name, len(got), got[:min(len(got), 16)])
			continue
		}
		rec.waitFor(t, bootevent.TFTPRefused, name)
	}
	for _, e := range rec.all() {
		if e.Kind == bootevent.TFTPServed {
			t.Errorf("served %q despite refusal", e.Path)
		}
	}
}

func TestWriteRefused(t *testing.T) {
	root, _ := lab(t)
	rec := &recorder{}
	_, addr := start(t, Config{Root: root, Events: rec, Timeout: 500 * time.Millisecond, Retries: 1})
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	rf, err := c.Send("new.efi", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("evil"))
	}
	if err == nil {
		t.Fatal("Send new.efi: no error, want the write refused")
	}
	if _, err := os.Stat(filepath.Join(root, "new.efi")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat new.efi after refused write: %v, want not exist", err)
	}
	e := rec.waitFor(t, bootevent.TFTPRefused, "new.efi")
	if e.Detail != "write refused" {
		t.Errorf("refusal detail = %q, want %q", e.Detail, "write refused")
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"undionly.kpxe", false},
		{"sub/snponly.efi", false},
		{"a..b.efi", false},
		{"", true},
		{"/undionly.kpxe", true},
		{`\undionly.kpxe`, true},
		{"../x", true},
		{"a/../../x", true},
		{`a\..\x`, true},
		{"a\x00b", true},
	}
	for _, tt := range tests {
		_, err := CleanPath(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("CleanPath(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}

func TestNewMissingRoot(t *testing.T) {
	_, err := New(Config{Root: filepath.Join(t.TempDir(), "nope")})
	if err == nil || !strings.Contains(err.Error(), "apt-get install ipxe") {
		t.Errorf("New with a missing root = %v, want an error naming the ipxe package", err)
	}
}

func TestRunRefusesTakenPort(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(Config{Root: t.TempDir(), Addr: c.LocalAddr().(*net.UDPAddr).AddrPort()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already uses the port") {
		t.Errorf("Run on a taken port = %v, want a port-taken error", err)
	}
}
