package devices

import (
	"fmt"
	"io/fs"
	"syscall"
)

// readSmall reads up to len(buf) bytes of the file at path with raw system
// calls: discovery reads thousands of tiny attribute files, and an os.File
// per read (poller registration, finalizer) costs more than the read.
// O_NONBLOCK keeps a FIFO planted in a tree from hanging discovery; it does
// nothing to regular and sysfs files.
func readSmall(path string, buf []byte) (int, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	total := 0
	for total < len(buf) {
		n, err := syscall.Read(fd, buf[total:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			return total, fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}
