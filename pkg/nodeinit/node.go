package nodeinit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/pkg/phonehome"
)

// Runner runs a program with the node's output; it is the seam tests fake.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) error
}

// ExecRunner runs programs with exec, their output going to Stdout and Stderr.
type ExecRunner struct{ Stdout, Stderr io.Writer }

// Run runs name with args and waits for it.
func (r ExecRunner) Run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = r.Stdout, r.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// Node is one node's view of its boot: the kernel command line, the file
// system root to write under, and how to reach the boot server.
type Node struct {
	// Cmdline is the kernel command line.
	Cmdline Cmdline
	// Root is the file system root (/ on a node; a directory in tests).
	Root string
	// RunDir holds files of this boot (default Root/run/slipway), such as
	// the fetched configuration (0600, removed after the run).
	RunDir string
	// Fetch reaches the boot server.
	Fetch Fetcher
	// Run runs programs (sh, hostname, ctr).
	Run Runner
	// Out receives progress lines; the systemd units send it to the console
	// and the journal.
	Out io.Writer
}

func (n Node) runDir() string {
	if n.RunDir != "" {
		return n.RunDir
	}
	return filepath.Join(n.Root, "run", "slipway")
}

func (n Node) say(format string, a ...any) {
	if n.Out != nil {
		fmt.Fprintf(n.Out, "slipway-node: "+format+"\n", a...)
	}
}

// Report sends one step report to the boot server's phone-home endpoint
// (PHONEHOME/phone-home/NODE), with retries; without phonehome= or
// slipway.node= on the command line it does nothing.
func (n Node) Report(ctx context.Context, r phonehome.Report) error {
	base, node := n.Cmdline[ParamPhoneHome], n.Cmdline[ParamNode]
	if base == "" || node == "" {
		return nil
	}
	_, err := n.Fetch.Post(ctx, phonehome.URL(base, node), []byte(phonehome.Format(r)))
	return err
}

// StepFetchConfig is the step reported when the node configuration cannot
// be fetched.
const StepFetchConfig = "fetch-config"

// ConfigHold is how long one request for the node configuration may wait
// for an answer: the provisioner holds it until the node's turn.
const ConfigHold = 30 * time.Minute

// RunConfig fetches the one-time configuration (slipway.config=) and runs
// it: a #cloud-config document is applied as cloud-init would (hostname,
// write_files, then runcmd as a script), a #! script is run by sh. A fetch
// failure is reported to the boot server as step fetch-config. The fetched
// document holds the join token (and on the first control plane the CA
// keys): it is kept 0600 under RunDir only while it runs.
func (n Node) RunConfig(ctx context.Context) (err error) {
	src := n.Cmdline[ParamConfig]
	if src == "" {
		return fmt.Errorf("run node configuration: the kernel command line has no %s=", ParamConfig)
	}
	// The URL carries the one-time token: name the server, not the URL.
	where := src
	if u, perr := url.Parse(src); perr == nil {
		where = u.Scheme + "://" + u.Host + u.Path
	}
	n.say("fetching the node configuration from %s", where)
	// The provisioner may hold the request until the node's turn (the
	// control plane first): wait long, and keep asking.
	f := n.Fetch
	if f.Client == nil {
		f.Client = &http.Client{Timeout: ConfigHold}
	}
	if f.Attempts == 0 {
		f.Attempts = 100
	}
	body, err := f.Get(ctx, src)
	if err != nil {
		err = fmt.Errorf("fetch node configuration from %s: %w", where, redact(err, src, where))
		if rerr := n.Report(ctx, phonehome.Report{Step: StepFetchConfig, Status: phonehome.Failed, RC: 1}); rerr != nil {
			n.say("reporting the failure to the provisioner failed too: %v", rerr)
		}
		return err
	}
	n.say("fetched %d bytes", len(body))
	if err := os.MkdirAll(n.runDir(), 0o700); err != nil {
		return fmt.Errorf("run node configuration: %w", err)
	}
	switch {
	case bytes.HasPrefix(body, []byte(CloudConfigHeader)):
		return n.runCloudConfig(ctx, body)
	case bytes.HasPrefix(body, []byte("#!")):
		p := filepath.Join(n.runDir(), "config.sh")
		if err := os.WriteFile(p, body, 0o700); err != nil {
			return fmt.Errorf("run node configuration: %w", err)
		}
		defer os.Remove(p)
		n.say("running the configuration script")
		if err := n.Run.Run(ctx, "/bin/sh", p); err != nil {
			return fmt.Errorf("run node configuration script: %w", err)
		}
		return nil
	}
	return fmt.Errorf("run node configuration: the document is neither %s nor a #! script (starts with %q)", CloudConfigHeader, firstLine(body))
}

func (n Node) runCloudConfig(ctx context.Context, body []byte) error {
	cc, err := ParseCloudConfig(body)
	if err != nil {
		return fmt.Errorf("run node configuration: %w", err)
	}
	n.say("applying cloud-config: hostname %q, %d files, %d runcmd entries", cc.Hostname, len(cc.WriteFiles), len(cc.RunCmd))
	script, err := cc.ApplyFiles(n.Root)
	if err != nil {
		return fmt.Errorf("run node configuration: %w", err)
	}
	if cc.Hostname != "" {
		if err := n.Run.Run(ctx, "hostname", cc.Hostname); err != nil {
			return fmt.Errorf("run node configuration: set hostname: %w", err)
		}
	}
	if script == "" {
		return nil
	}
	n.say("running runcmd")
	if err := n.Run.Run(ctx, "/bin/sh", script); err != nil {
		return fmt.Errorf("run node configuration: runcmd: %w", err)
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 40 {
		line = line[:40]
	}
	return string(line)
}

// redact replaces the full URL (with its token) in err's text.
func redact(err error, full, safe string) error {
	if full == safe || !strings.Contains(err.Error(), full) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), full, safe+"?[token]"))
}
