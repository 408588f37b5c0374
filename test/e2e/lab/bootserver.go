//go:build e2e

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Request is one request the lab's boot server answered.
type Request struct {
	// Time is when the answer was sent in full.
	Time time.Time
	// Path is the URL path, such as /vmlinuz or /phone-home.
	Path string
	// MAC is the mac= query parameter (phone-home only).
	MAC string
	// Query is the raw query (the node image's phone-home reports
	// mac, ip and uptime there).
	Query string
	// Remote is the client's address.
	Remote netip.Addr
}

// BootServer is a minimal HTTP boot server for the dnsmasq peer: it serves
// one iPXE script, the node image, a node configuration (a script that
// reports back) and a phone-home endpoint, and records every request. Slipway's own server is pkg/pxe/httpboot; this one exists
// so the lab and the benchmark have a peer that is not the code under test.
type BootServer struct {
	srv  *http.Server
	ln   net.Listener
	addr netip.AddrPort
	img  NodeImage

	mu       sync.Mutex
	requests []Request
	notify   chan struct{} // closed and replaced on every request
	action   string
}

// StartBootServer listens on the lab's server address at port (0 picks
// one) and serves /boot.ipxe, /vmlinuz, /initrd.gz, /config and /phone-home. The
// process must run inside the lab's namespace ([Lab.InProcess]).
func (l *Lab) StartBootServer(ctx context.Context, img NodeImage, port uint16) (*BootServer, error) {
	if !l.InProcess() {
		return nil, errors.New("start boot server: the test binary is not in the lab's netns (call lab.Main from TestMain)")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", netip.AddrPortFrom(l.ServerAddr(), port).String())
	if err != nil {
		return nil, fmt.Errorf("start boot server: %w", err)
	}
	s := &BootServer{ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String()), img: img, notify: make(chan struct{}), action: "poweroff"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.script)
	mux.HandleFunc("GET /vmlinuz", func(w http.ResponseWriter, r *http.Request) { s.file(w, r, img.Kernel) })
	mux.HandleFunc("GET /initrd.gz", func(w http.ResponseWriter, r *http.Request) { s.file(w, r, img.Initrd) })
	mux.HandleFunc("GET /config", s.config)
	mux.HandleFunc("/phone-home", s.phoneHome)
	mux.HandleFunc("POST /phone-home/config", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4096))
		s.record(r, "")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	l.mu.Lock()
	l.closers = append(l.closers, s.Close)
	l.mu.Unlock()
	return s, nil
}

// ScriptURL returns the iPXE script's URL, for the DHCP peer to hand out.
func (s *BootServer) ScriptURL() string { return "http://" + s.addr.String() + "/boot.ipxe" }

// SetAction sets the phone-home answer: "poweroff" (default) or "hold".
func (s *BootServer) SetAction(a string) {
	s.mu.Lock()
	s.action = a
	s.mu.Unlock()
}

// Close stops the server (Lab.Stop also does).
func (s *BootServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

func (s *BootServer) record(r *http.Request, mac string) {
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Time: time.Now(), Path: r.URL.Path, MAC: mac, Query: r.URL.RawQuery, Remote: remote.Addr()})
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func (s *BootServer) script(w http.ResponseWriter, r *http.Request) {
	defer s.record(r, "")
	base := "http://" + s.addr.String()
	fmt.Fprintf(w, "#!ipxe\necho slipway lab boot: mac ${net0/mac} ip ${net0/ip}\n"+
		"kernel %s/vmlinuz initrd=initrd.gz console=ttyS0 quiet panic=1 slipway.config=%s/config slipway.phonehome=%s/phone-home\n"+
		"initrd %s/initrd.gz\nboot\n", base, base, base, base)
}

// config serves the same kind of node configuration as Slipway's
// placeholder renderer (a script that reports back), so a node does the
// same work whichever server it boots from.
func (s *BootServer) config(w http.ResponseWriter, r *http.Request) {
	defer s.record(r, "")
	fmt.Fprintf(w, "#!/bin/sh\nwget -q -O - --post-data \"config fetched\" \"http://%s/phone-home/config\" || true\n", s.addr)
}

func (s *BootServer) file(w http.ResponseWriter, r *http.Request, path string) {
	http.ServeFile(w, r, path)
	s.record(r, "")
}

func (s *BootServer) phoneHome(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4096))
	s.record(r, strings.ToLower(r.URL.Query().Get("mac")))
	s.mu.Lock()
	a := s.action
	s.mu.Unlock()
	fmt.Fprintln(w, a)
}

// Requests returns every request so far, in arrival order.
func (s *BootServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// WaitPhoneHome waits for a phone-home from mac and returns it.
func (s *BootServer) WaitPhoneHome(ctx context.Context, mac net.HardwareAddr) (Request, error) {
	for {
		s.mu.Lock()
		for _, r := range s.requests {
			if r.Path == "/phone-home" && r.MAC == mac.String() {
				s.mu.Unlock()
				return r, nil
			}
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Request{}, fmt.Errorf("wait for phone-home from %s: %w", mac, ctx.Err())
		}
	}
}
