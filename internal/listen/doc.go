// Package listen binds sockets first and keeps them, so a server is handed
// a socket that is already its own. Tests and `provisioner demo` never probe
// for a free port and release it (another process may take the port in
// between); they bind port 0, read the port the kernel chose, and pass the
// bound socket to the server.
package listen
