package httpboot

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"text/template"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

//go:embed templates/boot.ipxe.tmpl
var templateFS embed.FS

// ScriptData is what an iPXE script template sees (text/template).
type ScriptData struct {
	// Node is the node name.
	Node string
	// MAC is the node's boot MAC, aa:bb:cc:dd:ee:ff.
	MAC string
	// Firmware is "uefi" or "bios".
	Firmware string
	// KernelURL and InitrdURL are where iPXE fetches the kernel and initrd.
	KernelURL, InitrdURL string
	// InitrdName is the initrd's file name, for initrd=<name> (UEFI needs it).
	InitrdName string
	// Args are the profile's extra kernel arguments.
	Args string
	// ConfigURL is the node's one-time configuration URL (token included).
	ConfigURL string
	// PhoneHomeURL is the boot server's base URL for phone-home.
	PhoneHomeURL string
	// Retries is how often the downloads are retried.
	Retries int
	// RetryDelaySeconds is the pause between retries.
	RetryDelaySeconds int
}

// DefaultScriptTemplate returns the built-in iPXE script template.
func DefaultScriptTemplate() string {
	b, _ := templateFS.ReadFile("templates/boot.ipxe.tmpl")
	return string(b)
}

// parseScriptTemplate parses text, or the built-in template when it is empty.
func parseScriptTemplate(text string) (*template.Template, error) {
	if text == "" {
		text = DefaultScriptTemplate()
	}
	t, err := template.New("boot.ipxe").Parse(text)
	if err != nil {
		return nil, err
	}
	// Catch references to fields that do not exist now, not at boot time.
	if err := t.Execute(io.Discard, ScriptData{}); err != nil {
		return nil, err
	}
	return t, nil
}

// assetURL resolves a Boot.Kernel or Boot.Initrd value: an http(s) URL is
// used as is, anything else is a path in the asset directory.
func (s *Server) assetURL(node inventory.Node, p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	return s.BaseURL(node) + "/assets/" + escapePath(strings.TrimPrefix(p, "/"))
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
	d := ScriptData{
		Node:              node.Name,
		MAC:               node.MAC.String(),
		Firmware:          fw,
		KernelURL:         s.assetURL(node, node.Boot.Kernel),
		InitrdURL:         s.assetURL(node, node.Boot.Initrd),
		InitrdName:        initrdName,
		Args:              strings.TrimSpace(node.Boot.KernelArgs),
		ConfigURL:         s.ConfigURL(node, token),
		PhoneHomeURL:      s.BaseURL(node),
		Retries:           s.cfg.ScriptRetries,
		RetryDelaySeconds: 3,
	}
	var b bytes.Buffer
	if err := s.tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render ipxe script for %s: %w", node.Name, err)
	}
	return b.Bytes(), nil
}
