// Package cmdlog builds the root logger of a command from its --log-level
// and --log-format flags, and quiets a logger below a level (a live
// progress table must not be interrupted by info lines). Both programs,
// provisioner and device-plugin, use it, so their flags mean the same.
package cmdlog
