package provisionfake

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

// Handler serves the rack's BMCs, readiness and issuer over HTTP for a
// provisioner in another process: POST /bmc/NODE/{poweroff,setboot,poweron},
// GET /ready/NODE, POST /issue/NODE?kind=KIND, POST /revoke/NODE.
func (r *Rack) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bmc/{node}/{op}", func(w http.ResponseWriter, req *http.Request) {
		b, err := r.OpenBMC(req.Context(), inventory.Node{Name: req.PathValue("node")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		switch req.PathValue("op") {
		case "poweroff":
			err = b.PowerOff(req.Context())
		case "setboot":
			err = b.SetNetboot(req.Context())
		case "poweron":
			err = b.PowerOn(req.Context())
		default:
			http.Error(w, "unknown op", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	})
	mux.HandleFunc("GET /ready/{node}", func(w http.ResponseWriter, req *http.Request) {
		ok, err := r.Ready(req.Context(), req.PathValue("node"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprint(w, ok)
	})
	mux.HandleFunc("POST /issue/{node}", func(w http.ResponseWriter, req *http.Request) {
		r.Issue(req.Context(), inventory.Node{Name: req.PathValue("node")}, provision.JoinKind(req.URL.Query().Get("kind")))
	})
	mux.HandleFunc("POST /revoke/{node}", func(w http.ResponseWriter, req *http.Request) {
		r.Revoke(req.Context(), inventory.Node{Name: req.PathValue("node")})
	})
	return mux
}

// Client reaches a Rack's Handler at Base (such as http://127.0.0.1:PORT).
type Client struct {
	Base string
	HTTP *http.Client
}

var (
	_ provision.BMCOpener = (*Client)(nil)
	_ provision.Readiness = (*Client)(nil)
	_ provision.Issuer    = (*Client)(nil)
)

func (c *Client) do(ctx context.Context, method, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, nil)
	if err != nil {
		return "", err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s", method, path, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// OpenBMC returns a BMC that calls the rack over HTTP.
func (c *Client) OpenBMC(_ context.Context, n inventory.Node) (provision.BMC, error) {
	return &httpBMC{c: c, node: url.PathEscape(n.Name)}, nil
}

// Ready asks the rack.
func (c *Client) Ready(ctx context.Context, node string) (bool, error) {
	s, err := c.do(ctx, http.MethodGet, "/ready/"+url.PathEscape(node))
	return s == "true", err
}

// Issue tells the rack.
func (c *Client) Issue(ctx context.Context, n inventory.Node, kind provision.JoinKind) error {
	_, err := c.do(ctx, http.MethodPost, "/issue/"+url.PathEscape(n.Name)+"?kind="+url.QueryEscape(string(kind)))
	return err
}

// Revoke tells the rack.
func (c *Client) Revoke(ctx context.Context, n inventory.Node) error {
	_, err := c.do(ctx, http.MethodPost, "/revoke/"+url.PathEscape(n.Name))
	return err
}

type httpBMC struct {
	c    *Client
	node string
}

func (b *httpBMC) PowerOff(ctx context.Context) error {
	_, err := b.c.do(ctx, http.MethodPost, "/bmc/"+b.node+"/poweroff")
	return err
}

func (b *httpBMC) SetNetboot(ctx context.Context) error {
	_, err := b.c.do(ctx, http.MethodPost, "/bmc/"+b.node+"/setboot")
	return err
}

func (b *httpBMC) PowerOn(ctx context.Context) error {
	_, err := b.c.do(ctx, http.MethodPost, "/bmc/"+b.node+"/poweron")
	return err
}
