package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/cmdlog"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // invalid input, or an operation failed on some node
	exitUsage   = 2 // bad flags or arguments
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error as a usage mistake (exit 2).
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// globals are the flags every command shares.
type globals struct {
	files     []string
	stateDir  string
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
	log       *slog.Logger
	// bootHook, when set, adjusts the boot options of serve and up (tests
	// hand the boot services pre-bound sockets through it).
	bootHook func(*assemble.Boot)
}

// loadInventory loads the inventory named by -f; its warnings go to stderr.
func (g *globals) loadInventory() (*inventory.Inventory, error) {
	if len(g.files) == 0 {
		return nil, usageError("no inventory given: pass -f FILE or -f DIR (for example -f inventory/examples/rack/)")
	}
	inv, err := inventory.Load(g.files...)
	if err != nil {
		return nil, err
	}
	for _, w := range inv.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
	return inv, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, &globals{stdout: stdout, stderr: stderr}, args)
}

// runWith runs the command line args with g's writers (and test hooks)
// and returns the exit code.
func runWith(ctx context.Context, g *globals, args []string) int {
	stdout, stderr := g.stdout, g.stderr
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "provisioner: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Cobra reports unknown commands and flags as plain errors.
	if isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognises the errors cobra itself returns for a wrong
// command or argument count (flag errors are marked by the FlagErrorFunc).
// Only the start of the message is matched, so a runtime error that merely
// mentions such words (say "bind: invalid argument") stays exit 1.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command ", "accepts ", "requires at least ", "requires at most ", "required flag(s) "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "provisioner",
		Short:         "Turn racked servers into Kubernetes nodes",
		Long:          "provisioner reads a rack inventory kept in git, drives each server's BMC to network-boot it,\nserves that boot itself and follows each node until it is a Ready Kubernetes node.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cmdlog.New(g.stderr, g.logLevel, g.logFormat)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			g.log = log
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	pf := root.PersistentFlags()
	pf.StringArrayVarP(&g.files, "file", "f", nil, "inventory file or directory (repeatable; a directory loads all *.yaml in name order)")
	pf.StringVar(&g.stateDir, "state-dir", "/var/lib/slipway", "state directory (cluster PKI, journal, tokens); keep it outside git")
	pf.StringVar(&g.logLevel, "log-level", cmdlog.DefaultLevel, cmdlog.LevelUsage)
	pf.StringVar(&g.logFormat, "log-format", cmdlog.DefaultFormat, cmdlog.FormatUsage)
	root.AddCommand(
		newValidateCmd(g),
		newInventoryCmd(g),
		newVersionCmd(g),
		newServeCmd(g),
		newPowerCmd(g),
		newBootdevCmd(g),
		newISOCmd(g),
		newUpCmd(g),
		newPlanCmd(g),
		newStatusCmd(g),
		newConfigCmd(g),
		newDemoCmd(g),
		newJournalCmd(g),
		newImagesCmd(g),
	)
	return root
}
