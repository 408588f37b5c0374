// Command pause is the pod sandbox's process in Slipway's offline image
// bundle (registry.k8s.io/pause, built from source instead of pulled): it
// holds the pod's namespaces and does nothing else. As PID 1 of the pod it
// reaps orphaned children; SIGINT and SIGTERM end it with status 0, as the
// upstream pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
