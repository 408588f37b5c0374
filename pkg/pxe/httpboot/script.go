package httpboot

import (
	"bytes"
	"embed"
	"fmt"
	"net/url"
	"path"
	"strings"
	"text/template"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

//go:embed templates/boot.ipxe.tmpl
var templateFS embed.FS

// scriptData is what the iPXE script template sees.
type scriptData struct {
	Node              string
	MAC               string
	Firmware          string
	KernelURL         string
	InitrdURL         string
	InitrdName        string
	Args              string
	ConfigURL         string
	PhoneHomeURL      string
	Retries           int
	RetryDelaySeconds int
}

func parseScriptTemplate() (*template.Template, error) {
	return template.ParseFS(templateFS, "templates/boot.ipxe.tmpl")
}

// assetURL resolves a Boot.Kernel or Boot.Initrd value: an http(s) URL is
// used as is, anything else is a path in the asset directory.
func (s *Server) assetURL(p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	return s.base + "/assets/" + escapePath(strings.TrimPrefix(p, "/"))
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, el := range parts {
		parts[i] = url.PathEscape(el)
	}
	return strings.Join(parts, "/")
}

// renderScript renders node's iPXE script with a fresh config token.
func (s *Server) renderScript(node inventory.Node, token string) ([]byte, error) {
	if node.Boot.Kernel == "" || node.Boot.Initrd == "" {
		return nil, fmt.Errorf("render ipxe script for %s: the node's boot profile names no kernel or initrd", node.Name)
	}
	initrdName := path.Base(node.Boot.Initrd)
	if u, err := url.Parse(node.Boot.Initrd); err == nil && u.Path != "" {
		initrdName = path.Base(u.Path)
	}
	fw := string(node.Boot.Firmware)
	if fw == "" {
		fw = string(inventory.FirmwareUEFI)
	}
	d := scriptData{
		Node:              node.Name,
		MAC:               node.MAC.String(),
		Firmware:          fw,
		KernelURL:         s.assetURL(node.Boot.Kernel),
		InitrdURL:         s.assetURL(node.Boot.Initrd),
		InitrdName:        initrdName,
		Args:              strings.TrimSpace(node.Boot.KernelArgs),
		ConfigURL:         s.ConfigURL(node, token),
		PhoneHomeURL:      s.base,
		Retries:           s.cfg.ScriptRetries,
		RetryDelaySeconds: 3,
	}
	var b bytes.Buffer
	if err := s.tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render ipxe script for %s: %w", node.Name, err)
	}
	return b.Bytes(), nil
}
