package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// repoRoot is where the help examples' relative paths start (they are
// written for a checkout of this repository).
const repoRoot = "../.."

// TestHelpExamplesRunAsWritten checks every example command line of every
// command's help: the command exists, its flags parse, each -f inventory
// exists in this repository and loads, and each node it names is in that
// inventory. (Running each one is done by hand: most need BMCs.) Parts
// after a pipe, a redirection or && are checked as their own lines when
// they are provisioner commands.
func TestHelpExamplesRunAsWritten(t *testing.T) {
	t.Parallel()
	root := newRootCmd(&globals{})
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			for _, part := range splitShell(line) {
				seen++
				// A fresh tree each time: parsed flags keep their values.
				checkExample(t, newRootCmd(&globals{}), c.CommandPath(), part)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if seen == 0 {
		t.Fatal("no help examples found")
	}
}

// TestREADMECommandsRunAsWritten does the same for the README's command
// lines (synopses with [OPTIONS], a|b or UPPERCASE placeholders aside).
func TestREADMECommandsRunAsWritten(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	inBlock, seen := false, 0
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			continue
		}
		line = strings.TrimSpace(line)
		if j := strings.Index(line, "  #"); j >= 0 {
			line = strings.TrimSpace(line[:j])
		}
		for _, p := range []string{"sudo ", "bin/", "./bin/"} {
			line = strings.TrimPrefix(line, p)
		}
		for _, part := range splitShell(line) {
			if strings.ContainsAny(part, "[]") || strings.Contains(part, "|") || hasPlaceholder(part) {
				continue
			}
			seen++
			checkExample(t, newRootCmd(&globals{}), fmt.Sprintf("README.md:%d", i+1), part)
		}
	}
	if seen == 0 {
		t.Fatal("no command lines found in README.md")
	}
}

// hasPlaceholder reports whether a command line has an UPPERCASE word
// (NODE, DIR, URL) standing for a value.
func hasPlaceholder(line string) bool {
	for _, w := range strings.Fields(line) {
		if len(w) > 1 && strings.ToUpper(w) == w && strings.ToLower(w) != w {
			return true
		}
	}
	return false
}

// splitShell returns the provisioner command lines in one example line.
func splitShell(line string) []string {
	var out []string
	for _, seg := range strings.Split(line, "&&") {
		seg = strings.TrimSpace(strings.Split(seg, "|")[0])
		if i := strings.Index(seg, ">"); i >= 0 {
			seg = strings.TrimSpace(seg[:i])
		}
		if strings.HasPrefix(seg, "provisioner ") {
			out = append(out, seg)
		}
	}
	return out
}

func checkExample(t *testing.T, root *cobra.Command, where, line string) {
	t.Helper()
	args := strings.Fields(strings.TrimPrefix(line, "provisioner "))
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Errorf("%s: example %q: no such command (%v)", where, line, err)
		return
	}
	// Find returns the flags too; parse them as cobra would.
	cmd.InitDefaultHelpFlag()
	fs := cmd.Flags()
	fs.AddFlagSet(cmd.InheritedFlags())
	if err := fs.Parse(rest); err != nil {
		t.Errorf("%s: example %q: %v", where, line, err)
		return
	}
	files, _ := fs.GetStringArray("file")
	var inv *inventory.Inventory
	for _, f := range files {
		p := f
		if !filepath.IsAbs(p) {
			p = filepath.Join(repoRoot, p)
		}
		if strings.HasPrefix(f, "/tmp/") {
			continue // written by an earlier part of the example
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: example %q: -f %s: %v", where, line, f, err)
			return
		}
		if inv, err = inventory.Load(p); err != nil {
			t.Errorf("%s: example %q: -f %s does not load: %v", where, line, f, err)
			return
		}
	}
	nodes := nodeArgs(cmd, fs.Args())
	if len(nodes) > 0 && inv == nil {
		t.Errorf("%s: example %q names nodes %v but no inventory", where, line, nodes)
	}
	for _, n := range nodes {
		if inv == nil {
			break
		}
		if _, ok := inv.Node(n); !ok {
			t.Errorf("%s: example %q: node %s is not in %v", where, line, n, files)
		}
	}
}

// nodeArgs returns the positional arguments that name nodes: from the
// first NODE word of the command's usage on.
func nodeArgs(cmd *cobra.Command, args []string) []string {
	words := strings.Fields(cmd.Use)[1:]
	for i, w := range words {
		if strings.HasPrefix(strings.TrimLeft(w, "["), "NODE") {
			if i < len(args) {
				return args[i:]
			}
			return nil
		}
	}
	return nil
}
