package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// Defaults.
const (
	// DefaultPort is the boot HTTP port.
	DefaultPort = 8080
	// DefaultMaxPhoneHomeBytes caps a phone-home body.
	DefaultMaxPhoneHomeBytes = 64 << 10
	// DefaultScriptRetries is how often the iPXE script retries its downloads.
	DefaultScriptRetries = 5
	// DefaultNextAction is the phone-home answer when Config.NextAction is nil.
	DefaultNextAction = "ok"
	// shutdownGrace bounds how long Run waits for requests in flight.
	shutdownGrace = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address (default 0.0.0.0:8080).
	Addr netip.AddrPort
	// Listener, if set, is a listener bound by the caller, used instead of
	// listening on Addr (bind first: tests and the demo). Run closes it.
	Listener net.Listener
	// BaseURL is this server's URL as nodes reach it, such as
	// http://10.77.0.1:8080; it goes into scripts and kernel command lines.
	// Required.
	BaseURL string
	// Networks are the routed provisioning networks (inventory networks:).
	// A node whose Network names one gets every URL (script, kernel,
	// initrd, config, phone-home) on that network's ProvisionerAddress,
	// with BaseURL's scheme and port: the address its subnet routes to the
	// provisioner.
	Networks []inventory.ProvisioningNetwork
	// AssetDir holds kernels, initrds and images, served under /assets/.
	// Empty: no assets.
	AssetDir string
	// FirmwareDir holds the iPXE binaries, served under /ipxe/ for UEFI HTTP
	// boot clients. Empty: none.
	FirmwareDir string
	// Nodes are the nodes served; every other name or address gets 404.
	// Disabled nodes are left out.
	Nodes []inventory.Node
	// Renderer produces a node's configuration (default PhoneHomeRenderer).
	Renderer Renderer
	// Tokens issues and checks config tokens (default NewTokens(0, nil)).
	Tokens *Tokens
	// NextAction returns the body of the answer to a node's phone-home (nil:
	// DefaultNextAction). The test lab's node image runs "poweroff" or "hold".
	NextAction func(node inventory.Node) string
	// RequireNodeIP serves a node's script and configuration, and accepts
	// its phone-home, only from the node's inventory address, so a machine
	// that is not the node can neither mint itself a config token, fetch a
	// config (join token, CA keys) nor report progress in the node's name.
	RequireNodeIP bool
	// MaxPhoneHomeBytes caps a phone-home body (default DefaultMaxPhoneHomeBytes).
	MaxPhoneHomeBytes int64
	// ScriptTemplate is the text/template of the per-node iPXE script, fed
	// a ScriptData (empty: DefaultScriptTemplate).
	ScriptTemplate string
	// ScriptRetries is how often iPXE retries the kernel and initrd
	// downloads (default DefaultScriptRetries).
	ScriptRetries int
	// Registry receives the server's metrics and is served at /metrics
	// (default: a new registry).
	Registry *prometheus.Registry
	// Events receives script, asset, config and phone-home events (nil: none).
	Events bootevent.Sink
	// Log receives diagnostics (nil: discard).
	Log *slog.Logger
}

// Server is the boot HTTP server.
type Server struct {
	cfg     Config
	base    string
	log     *slog.Logger
	events  bootevent.Sink
	tmpl    *template.Template
	tokens  *Tokens
	render  Renderer
	reg     *prometheus.Registry
	metrics *metrics
	byName  map[string]inventory.Node
	byMAC   map[string]inventory.Node
	byIP    map[netip.Addr]inventory.Node
	bases   map[string]string // routed network name -> base URL
	assets  *os.Root
	fw      *os.Root
	handler http.Handler

	mu    sync.Mutex
	ready chan struct{}
	addr  net.Addr
}

// New checks cfg, opens the asset and firmware directories and returns a
// server; Run starts it.
func New(cfg Config) (*Server, error) {
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if cfg.MaxPhoneHomeBytes <= 0 {
		cfg.MaxPhoneHomeBytes = DefaultMaxPhoneHomeBytes
	}
	if cfg.ScriptRetries <= 0 {
		cfg.ScriptRetries = DefaultScriptRetries
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("boot http base url %q: want http://ADDRESS:PORT as nodes reach this server", cfg.BaseURL)
	}
	s := &Server{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		log:    cfg.Log,
		events: cfg.Events,
		tokens: cfg.Tokens,
		render: cfg.Renderer,
		reg:    cfg.Registry,
		byName: make(map[string]inventory.Node),
		byMAC:  make(map[string]inventory.Node),
		byIP:   make(map[netip.Addr]inventory.Node),
		ready:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.events == nil {
		s.events = bootevent.Discard{}
	}
	if s.tokens == nil {
		s.tokens = NewTokens(0, nil)
	}
	s.bases = make(map[string]string, len(cfg.Networks))
	for _, p := range cfg.Networks {
		s.bases[p.Name] = strings.TrimRight(p.BootURL(s.base), "/")
	}
	if s.render == nil {
		s.render = RendererFunc(func(ctx context.Context, n inventory.Node) ([]byte, error) {
			return PhoneHomeRenderer{BaseURL: s.BaseURL(n)}.Render(ctx, n)
		})
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if s.tmpl, err = parseScriptTemplate(cfg.ScriptTemplate); err != nil {
		return nil, fmt.Errorf("boot http: parse ipxe script template: %w", err)
	}
	if s.metrics, err = newMetrics(s.reg); err != nil {
		return nil, fmt.Errorf("boot http: register metrics: %w", err)
	}
	for _, n := range cfg.Nodes {
		if n.Disabled {
			continue
		}
		s.byName[n.Name] = n
		if len(n.MAC) > 0 {
			s.byMAC[n.MAC.String()] = n
		}
		if n.IP.IsValid() {
			s.byIP[n.IP] = n
		}
	}
	var errs []error
	if cfg.AssetDir != "" {
		if s.assets, err = os.OpenRoot(cfg.AssetDir); err != nil {
			errs = append(errs, fmt.Errorf("boot http asset directory: %w", err))
		}
	}
	if cfg.FirmwareDir != "" {
		if s.fw, err = os.OpenRoot(cfg.FirmwareDir); err != nil {
			errs = append(errs, fmt.Errorf("boot http firmware directory: %w (install the ipxe package or set another directory)", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.closeRoots()
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// MissingAssets lists, one line each, the kernels and initrds the served
// nodes name that are not regular files in the asset directory (URLs are
// not checked). Run logs them at start.
func (s *Server) MissingAssets() []string {
	var out []string
	seen := map[string]bool{}
	names := make([]string, 0, len(s.byName))
	for name := range s.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := s.byName[name]
		for _, p := range []string{n.Boot.Kernel, n.Boot.Initrd} {
			if p == "" || strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") || seen[p] {
				continue
			}
			seen[p] = true
			if s.assets == nil {
				out = append(out, fmt.Sprintf("node %s: %s: no asset directory given (--assets)", n.Name, p))
				continue
			}
			fi, err := s.assets.Stat(strings.TrimPrefix(p, "/"))
			if err != nil || !fi.Mode().IsRegular() {
				out = append(out, fmt.Sprintf("node %s: %s is not a file in %s", n.Name, p, s.cfg.AssetDir))
			}
		}
	}
	return out
}

func (s *Server) closeRoots() {
	if s.assets != nil {
		s.assets.Close()
	}
	if s.fw != nil {
		s.fw.Close()
	}
}

// BaseURL returns this server's URL as node reaches it: Config.BaseURL, on
// its network's provisioner address for a node of a routed network.
func (s *Server) BaseURL(node inventory.Node) string {
	if b, ok := s.bases[node.Network]; ok {
		return b
	}
	return s.base
}

// ScriptURL returns the URL of node's iPXE script (what DHCP hands iPXE).
func (s *Server) ScriptURL(node inventory.Node) string {
	return s.BaseURL(node) + "/boot/" + url.PathEscape(node.Name) + ".ipxe"
}

// FirmwareURL returns the URL of the iPXE binary file as node reaches it
// (for UEFI HTTP boot).
func (s *Server) FirmwareURL(node inventory.Node, file string) string {
	return s.BaseURL(node) + "/ipxe/" + escapePath(file)
}

// ConfigURL returns the one-time URL of node's configuration.
func (s *Server) ConfigURL(node inventory.Node, token string) string {
	return s.BaseURL(node) + "/config/" + url.PathEscape(node.Name) + "?token=" + url.QueryEscape(token)
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Ready is closed once the listener is open.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listen address once Ready is closed.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx is done, then shuts down within a few seconds and
// returns nil. It returns an error when the address cannot be listened on.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeRoots()
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr.String())
		if err != nil {
			hint := ""
			switch {
			case errors.Is(err, syscall.EADDRINUSE):
				hint = " (another program already uses the port: stop it or set network.provisioner.httpPort)"
			case errors.Is(err, syscall.EACCES):
				hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
			case errors.Is(err, syscall.EADDRNOTAVAIL):
				hint = " (the address is not on any interface: check network.provisioner.address in the inventory)"
			}
			return fmt.Errorf("boot http listen %s: %w%s", s.cfg.Addr, err, hint)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// No write timeout: a slow node may take minutes over a big image.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("boot http serving", "addr", ln.Addr().String(), "base_url", s.base)
	for _, problem := range s.MissingAssets() {
		s.log.Warn("boot asset missing", "problem", problem)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("boot http serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/{file}", s.instrument(kindScript, s.serveScript))
	mux.HandleFunc("GET /assets/{path...}", s.serveAsset)
	mux.HandleFunc("GET /ipxe/{path...}", s.instrument(kindFirmware, func(w http.ResponseWriter, r *http.Request) {
		s.serveFile(w, r, s.fw, r.PathValue("path"), kindFirmware)
	}))
	mux.HandleFunc("GET /config/{node}", s.instrument(kindConfig, s.serveConfig))
	mux.HandleFunc("POST /phone-home/{node}", s.instrument(kindPhoneHome, s.phoneHome))
	mux.HandleFunc("GET /phone-home/{node}", s.instrument(kindPhoneHome, s.phoneHome))
	mux.HandleFunc("GET /phone-home", s.instrument(kindPhoneHome, s.phoneHome))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return mux
}

// instrument wraps h with the request metrics for kind.
func (s *Server) instrument(kind string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w}
		h(cw, r)
		s.metrics.observe(kind, cw.status(), cw.n, time.Since(start))
	}
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".ipxe")
	node, known := s.byName[name]
	ip := remoteAddr(r)
	if !ok || !known {
		s.log.Debug("boot http unknown script", "path", r.URL.Path, "ip", ip.String())
		http.NotFound(w, r)
		return
	}
	if s.cfg.RequireNodeIP && ip != node.IP {
		s.log.Info("script request from another address refused", "node", node.Name, "ip", ip.String(), "node_ip", node.IP.String())
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	tok, err := s.tokens.Issue(node.Name)
	if err != nil {
		s.log.Error("issue config token", "node", node.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	b, err := s.renderScript(node, tok)
	if err != nil {
		s.log.Error("render ipxe script", "node", node.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	n, _ := w.Write(b)
	s.events.Publish(bootevent.Event{Kind: bootevent.ScriptServed, Node: node.Name, MAC: hw(node.MAC), IP: ip, Path: r.URL.Path, Bytes: int64(n)})
}

// serveAsset serves a kernel, initrd or other file from the asset directory;
// the kind comes from what the requesting node's profile names.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	kind := kindAsset
	node, known := s.byIP[remoteAddr(r)]
	if known {
		switch strings.TrimPrefix(node.Boot.Kernel, "/") {
		case p:
			kind = kindKernel
		}
		if strings.TrimPrefix(node.Boot.Initrd, "/") == p {
			kind = kindInitrd
		}
	} else {
		// Not a known address (proxy mode, or a test): classify by what any
		// node boots.
		for _, n := range s.byName {
			if strings.TrimPrefix(n.Boot.Kernel, "/") == p {
				kind = kindKernel
				break
			}
			if strings.TrimPrefix(n.Boot.Initrd, "/") == p {
				kind = kindInitrd
				break
			}
		}
	}
	s.instrument(kind, func(w http.ResponseWriter, r *http.Request) {
		s.serveFile(w, r, s.assets, p, kind)
	})(w, r)
}

// serveFile serves name from root with range support; the body goes out
// with sendfile.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, root *os.Root, name, kind string) {
	if root == nil {
		http.NotFound(w, r)
		return
	}
	ip := remoteAddr(r)
	f, err := root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Usually a kernel or initrd path in a profile that does not
			// match the asset directory: say so where the operator looks.
			s.log.Warn("boot http file not found", "path", r.URL.Path, "ip", ip.String(), "node", s.byIP[ip].Name)
		} else {
			s.log.Info("boot http refused path", "path", r.URL.Path, "ip", ip.String(), "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	cw, _ := w.(*countingWriter)
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	// UEFI HTTP boot asks HEAD for the size first; only a GET sends the file.
	if cw == nil || cw.status() >= 300 || r.Method != http.MethodGet {
		return
	}
	ev := bootevent.Event{Kind: bootevent.AssetServed, IP: ip, Path: r.URL.Path, Bytes: cw.n}
	switch kind {
	case kindKernel:
		ev.Kind = bootevent.KernelServed
	case kindInitrd:
		ev.Kind = bootevent.InitrdServed
	}
	if n, ok := s.byIP[ip]; ok {
		ev.Node, ev.MAC = n.Name, hw(n.MAC)
	}
	if cw.status() == http.StatusPartialContent {
		ev.Detail = "range " + r.Header.Get("Range")
	}
	s.events.Publish(ev)
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	ip := remoteAddr(r)
	node, known := s.byName[name]
	if !known {
		s.events.Publish(bootevent.Event{Kind: bootevent.ConfigRefused, IP: ip, Path: "/config/" + name, Detail: "unknown node"})
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if s.cfg.RequireNodeIP && ip != node.IP {
		s.log.Info("config request refused", "node", node.Name, "ip", ip.String(), "reason", "not the node's address")
		s.events.Publish(bootevent.Event{Kind: bootevent.ConfigRefused, Node: node.Name, MAC: hw(node.MAC), IP: ip, Path: "/config/" + name, Detail: "not the node's address"})
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	refuse := func(err error) {
		s.log.Info("config request refused", "node", node.Name, "ip", ip.String(), "reason", err.Error())
		s.events.Publish(bootevent.Event{Kind: bootevent.ConfigRefused, Node: node.Name, MAC: hw(node.MAC), IP: ip, Path: "/config/" + name, Detail: err.Error()})
		http.Error(w, "forbidden", http.StatusForbidden)
	}
	// The token is checked before rendering (a renderer may have side
	// effects, such as journaling the fetch) but used up only after a
	// successful render, so a failed render leaves the node able to retry.
	tok := r.URL.Query().Get("token")
	if err := s.tokens.Check(node.Name, tok); err != nil {
		refuse(err)
		return
	}
	b, err := s.render.Render(r.Context(), node)
	if err != nil {
		s.log.Error("render node config", "node", node.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := s.tokens.Redeem(node.Name, tok); err != nil {
		refuse(err) // a concurrent request with the same token won
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	n, _ := w.Write(b)
	s.events.Publish(bootevent.Event{Kind: bootevent.ConfigFetched, Node: node.Name, MAC: hw(node.MAC), IP: ip, Path: "/config/" + name, Bytes: int64(n)})
}

// phoneHome records a booted node's progress. The node is named in the path
// or by ?mac=; the body (POST) or the query is the progress message.
func (s *Server) phoneHome(w http.ResponseWriter, r *http.Request) {
	ip := remoteAddr(r)
	var node inventory.Node
	var known bool
	if name := r.PathValue("node"); name != "" {
		node, known = s.byName[name]
	} else if mac, err := net.ParseMAC(r.URL.Query().Get("mac")); err == nil {
		node, known = s.byMAC[mac.String()]
	}
	if !known {
		http.NotFound(w, r)
		return
	}
	if s.cfg.RequireNodeIP && ip != node.IP {
		s.log.Info("phone-home from another address refused", "node", node.Name, "ip", ip.String(), "node_ip", node.IP.String())
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	msg := r.URL.RawQuery
	if r.Method == http.MethodPost && r.ContentLength > s.cfg.MaxPhoneHomeBytes {
		// Refused on the declared length, before the body is read: a
		// client that sent "Expect: 100-continue" then gets 413 instead of
		// 100 (which reading would send) and never uploads the body.
		s.log.Info("phone-home body too large", "node", node.Name, "ip", ip.String(), "limit", s.cfg.MaxPhoneHomeBytes, "declared", r.ContentLength)
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("body larger than %d bytes", s.cfg.MaxPhoneHomeBytes), http.StatusRequestEntityTooLarge)
		return
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxPhoneHomeBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				s.log.Info("phone-home body too large", "node", node.Name, "ip", ip.String(), "limit", mbe.Limit)
				http.Error(w, fmt.Sprintf("body larger than %d bytes", mbe.Limit), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		msg = string(body)
	}
	s.events.Publish(bootevent.Event{Kind: bootevent.PhoneHome, Node: node.Name, MAC: hw(node.MAC), IP: ip, Path: r.URL.Path, Detail: printable(msg, 256)})
	next := DefaultNextAction
	if s.cfg.NextAction != nil {
		next = s.cfg.NextAction(node)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, next)
}

// printable returns s cut to max runes with control characters replaced, so
// a node cannot forge log lines.
func printable(s string, max int) string {
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

func hw(m inventory.HardwareAddr) net.HardwareAddr { return append(net.HardwareAddr(nil), m...) }
