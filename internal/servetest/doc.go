// Package servetest runs one of the project's services (anything with
// Run(ctx) error and Ready()) for the length of a test: it waits until the
// service is ready or its Run has failed (never only on Ready: a service
// that fails to start must fail the test, not hang it), and on cleanup
// stops it and checks that it stopped cleanly, as every server's Run
// contract requires. It also binds the sockets a test hands to a service
// (bind first, never probe a free port and release it) and closes them when
// the test ends.
package servetest
