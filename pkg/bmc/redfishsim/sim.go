package redfishsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Config configures a Sim.
type Config struct {
	// Log receives one debug line per request; nil discards.
	Log *slog.Logger
}

// Sim runs simulated BMCs. Its methods are safe for concurrent use.
type Sim struct {
	log     *slog.Logger
	cert    tls.Certificate
	certPEM []byte

	mu   sync.Mutex
	bmcs []*BMC
}

// New returns a Sim with a fresh self-signed certificate (ECDSA P-256, valid
// for 127.0.0.1, ::1 and localhost) that its HTTPS BMCs present.
func New(cfg Config) (*Sim, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("create redfish simulator certificate: %w", err)
	}
	return &Sim{log: log, cert: cert, certPEM: certPEM}, nil
}

// CertPEM returns the PEM certificate the HTTPS BMCs present; write it to a
// file and name it as a BMC's CAFile to verify TLS.
func (s *Sim) CertPEM() []byte { return s.certPEM }

// Start starts one simulated BMC and returns once it accepts connections.
func (s *Sim) Start(cfg BMCConfig) (*BMC, error) {
	b, err := newBMC(cfg, s.log)
	if err != nil {
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start simulated bmc %s: listen on %s: %w", b.name, addr, err)
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start simulated bmc %s: %w", b.name, err)
	}
	b.addr = ap
	b.srv = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	if cfg.TLS {
		b.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, b.srv.TLSConfig)
	}
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		// Serve returns ErrServerClosed after Close; anything else is a
		// listener failure that the next request would show anyway.
		_ = b.srv.Serve(ln)
	}()
	s.mu.Lock()
	s.bmcs = append(s.bmcs, b)
	s.mu.Unlock()
	return b, nil
}

// BMCs returns the BMCs started so far, in start order.
func (s *Sim) BMCs() []*BMC {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*BMC(nil), s.bmcs...)
}

// Close stops every BMC.
func (s *Sim) Close() error {
	s.mu.Lock()
	bmcs := s.bmcs
	s.bmcs = nil
	s.mu.Unlock()
	var errs []error
	for _, b := range bmcs {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// Run blocks until ctx is done, then stops every BMC. It returns nil on a
// clean stop.
func (s *Sim) Run(ctx context.Context) error {
	<-ctx.Done()
	return s.Close()
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "redfishsim"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

// drain reads and discards a request body so the connection can be reused.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20)) }
