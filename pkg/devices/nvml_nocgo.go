//go:build !cgo || !linux

package devices

import "fmt"

// loadNVML returns a seam whose Init fails: go-nvml needs cgo (and Linux)
// to dlopen libnvidia-ml.
func loadNVML() NVML { return noNVML{} }

type noNVML struct{}

func (noNVML) Init() error {
	return fmt.Errorf("nvml init: built without cgo: %w", ErrNVMLNotFound)
}
func (noNVML) Shutdown() error                    { return nil }
func (noNVML) GPUs() ([]NVMLGPU, error)           { return nil, nil }
func (noNVML) NewEventSet() (NVMLEventSet, error) { return nil, ErrNVMLNotFound }
