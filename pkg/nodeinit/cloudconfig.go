package nodeinit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// CloudConfigHeader starts every #cloud-config document.
const CloudConfigHeader = "#cloud-config"

// CloudConfig is the subset of cloud-init's #cloud-config that Slipway
// renders (pkg/kubeadm): hostname, write_files and runcmd. Decoding is
// strict: a key this subset does not implement is an error rather than
// something silently skipped that cloud-init would have done.
type CloudConfig struct {
	Hostname   string      `json:"hostname,omitempty"`
	FQDN       string      `json:"fqdn,omitempty"`
	WriteFiles []WriteFile `json:"write_files,omitempty"`
	// RunCmd items are a string (run by sh as written) or a list of
	// arguments (quoted for sh), as in cloud-init.
	RunCmd []json.RawMessage `json:"runcmd,omitempty"`
}

// WriteFile is one write_files entry, with cloud-init's meaning.
type WriteFile struct {
	Path string `json:"path"`
	// Content is the file's content after decoding Encoding.
	Content string `json:"content,omitempty"`
	// Encoding is "", "text/plain", "b64"/"base64", "gz"/"gzip" or
	// "gz+b64"/"gzip+base64" (and the other spellings cloud-init accepts).
	Encoding string `json:"encoding,omitempty"`
	// Owner is "user:group" (default root:root), names from the node's
	// /etc/passwd and /etc/group, or numbers.
	Owner string `json:"owner,omitempty"`
	// Permissions is an octal mode such as "0600" (default 0644).
	Permissions string `json:"permissions,omitempty"`
	// Append adds to an existing file instead of replacing it.
	Append bool `json:"append,omitempty"`
	// Defer writes the file after runcmd's users are created; Slipway
	// never sets it, and it is refused rather than mishandled.
	Defer bool `json:"defer,omitempty"`
}

// ParseCloudConfig decodes a #cloud-config document.
func ParseCloudConfig(b []byte) (CloudConfig, error) {
	if !bytes.HasPrefix(b, []byte(CloudConfigHeader)) {
		return CloudConfig{}, fmt.Errorf("parse cloud-config: the document does not start with %q", CloudConfigHeader)
	}
	var cc CloudConfig
	if err := yaml.UnmarshalStrict(b, &cc); err != nil {
		return CloudConfig{}, fmt.Errorf("parse cloud-config: %w (this node image implements hostname, fqdn, write_files and runcmd)", err)
	}
	var errs []error
	for i, f := range cc.WriteFiles {
		if f.Path == "" || !path.IsAbs(f.Path) {
			errs = append(errs, fmt.Errorf("write_files[%d]: path %q is not absolute", i, f.Path))
		}
		if f.Defer {
			errs = append(errs, fmt.Errorf("write_files[%d] (%s): defer is not supported by this node image", i, f.Path))
		}
		if _, err := f.mode(); err != nil {
			errs = append(errs, fmt.Errorf("write_files[%d] (%s): %w", i, f.Path, err))
		}
		if _, err := f.data(); err != nil {
			errs = append(errs, fmt.Errorf("write_files[%d] (%s): %w", i, f.Path, err))
		}
	}
	if _, err := cc.RunScript(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return CloudConfig{}, fmt.Errorf("parse cloud-config: %w", err)
	}
	return cc, nil
}

func (f WriteFile) mode() (os.FileMode, error) {
	if f.Permissions == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(f.Permissions, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("permissions %q: want an octal mode such as 0600", f.Permissions)
	}
	return os.FileMode(m), nil
}

func (f WriteFile) data() ([]byte, error) {
	enc := strings.ToLower(strings.TrimSpace(f.Encoding))
	b := []byte(f.Content)
	var err error
	switch enc {
	case "", "text/plain":
		return b, nil
	case "b64", "base64":
		return base64.StdEncoding.DecodeString(f.Content)
	case "gz", "gzip":
		return gunzip(b)
	case "gz+b64", "gz+base64", "gzip+b64", "gzip+base64":
		if b, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
			return nil, err
		}
		return gunzip(b)
	}
	return nil, fmt.Errorf("encoding %q: want b64, gzip or gz+b64", f.Encoding)
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// RunScript returns runcmd as the shell script cloud-init would write for
// it (one line per item), or nil when there is none.
func (cc CloudConfig) RunScript() ([]byte, error) {
	if len(cc.RunCmd) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n")
	for i, raw := range cc.RunCmd {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			b.WriteString(s + "\n")
			continue
		}
		var args []string
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, fmt.Errorf("runcmd[%d]: want a string or a list of strings: %s", i, raw)
		}
		q := make([]string, len(args))
		for j, a := range args {
			q[j] = shellQuote(a)
		}
		b.WriteString(strings.Join(q, " ") + "\n")
	}
	return b.Bytes(), nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// RunCmdScript is where ApplyFiles writes the runcmd script, as cloud-init does.
const RunCmdScript = "/var/lib/cloud/instance/scripts/runcmd"

// ApplyFiles does what cloud-init does before it runs commands: it writes
// the hostname to etc/hostname and every write_files entry, then the runcmd
// script, all under root (/ on a node). It returns the script's path under
// root ("" when there is no runcmd). Running the script and setting the
// live hostname are the caller's.
func (cc CloudConfig) ApplyFiles(root string) (string, error) {
	if cc.Hostname != "" {
		if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte(cc.Hostname+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("apply cloud-config: hostname: %w", err)
		}
	}
	ids := idLookup{root: root}
	for _, f := range cc.WriteFiles {
		if err := writeFile(root, f, &ids); err != nil {
			return "", fmt.Errorf("apply cloud-config: write %s: %w", f.Path, err)
		}
	}
	script, err := cc.RunScript()
	if err != nil || script == nil {
		return "", err
	}
	p := filepath.Join(root, RunCmdScript)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("apply cloud-config: runcmd: %w", err)
	}
	if err := os.WriteFile(p, script, 0o700); err != nil {
		return "", fmt.Errorf("apply cloud-config: runcmd: %w", err)
	}
	return p, nil
}

func writeFile(root string, f WriteFile, ids *idLookup) error {
	data, err := f.data()
	if err != nil {
		return err
	}
	mode, err := f.mode()
	if err != nil {
		return err
	}
	owner := f.Owner
	if owner == "" {
		owner = "root:root"
	}
	uid, gid, err := ids.owner(owner)
	if err != nil {
		return err
	}
	p := filepath.Join(root, f.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if f.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	// Created 0600 and widened after the write, so a secret is never
	// readable by others, even for a moment.
	fh, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	return os.Chmod(p, mode)
}

// idLookup resolves user and group names from root's etc/passwd and
// etc/group.
type idLookup struct{ root string }

func (l *idLookup) owner(s string) (uid, gid int, err error) {
	user, group, _ := strings.Cut(s, ":")
	if group == "" {
		group = user
	}
	if uid, err = l.id("passwd", user); err != nil {
		return 0, 0, fmt.Errorf("owner %q: %w", s, err)
	}
	if gid, err = l.id("group", group); err != nil {
		return 0, 0, fmt.Errorf("owner %q: %w", s, err)
	}
	return uid, gid, nil
}

func (l *idLookup) id(db, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	if name == "root" {
		return 0, nil
	}
	fh, err := os.Open(filepath.Join(l.root, "etc", db))
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", name, err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 3 && f[0] == name {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("no %s entry %q", db, name)
}
