// Package servetest runs one of the project's services (anything with
// Run(ctx) error and Ready()) for the length of a test: it waits until the
// service is ready, and on cleanup stops it and checks that it stopped
// cleanly, as every server's Run contract requires.
package servetest
