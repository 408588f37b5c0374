package nodeinit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-dev/slipway/pkg/imagebundle"
)

// ArchiveTimeout bounds one download of an image archive.
const ArchiveTimeout = 15 * time.Minute

// ContainerdNamespace is where the kubelet's images live.
const ContainerdNamespace = "k8s.io"

// ImportImages fetches the image bundle index named by slipway.images= and
// imports each archive it lists into containerd's k8s.io namespace with
// ctr, checking each archive's size and sha256 first. Archives are
// downloaded one at a time into dir (which should be on the same tmpfs as
// containerd's state) and removed after the import.
func (n Node) ImportImages(ctx context.Context, dir string) error {
	indexURL, err := n.Cmdline.AssetURL(ParamImages)
	if err != nil {
		return fmt.Errorf("import images: %w", err)
	}
	body, err := n.Fetch.Get(ctx, indexURL)
	if err != nil {
		return fmt.Errorf("import images: %w", err)
	}
	ix, err := imagebundle.ParseIndex(body)
	if err != nil {
		return fmt.Errorf("import images from %s: %w", indexURL, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("import images: %w", err)
	}
	// containerd may still be starting (slowly, on an emulated machine).
	wait := Fetcher{Attempts: 120, Backoff: 2 * time.Second, Progress: n.Out}
	if err := wait.Do(ctx, "wait for containerd", func(ctx context.Context) error {
		return n.Run.Run(ctx, "ctr", "--namespace", ContainerdNamespace, "version")
	}); err != nil {
		return fmt.Errorf("import images: %w", err)
	}
	n.say("importing %d images (Kubernetes %s) from %s", len(ix.Images), ix.KubernetesVersion, indexURL)
	start := time.Now()
	for _, e := range ix.Images {
		t := time.Now()
		u, err := resolve(indexURL, e.File)
		if err != nil {
			return fmt.Errorf("import image %s: %w", e.Ref, err)
		}
		file := filepath.Join(dir, filepath.Base(e.File))
		if err := n.download(ctx, u, file, e); err != nil {
			return fmt.Errorf("import image %s: %w", e.Ref, err)
		}
		err = n.Run.Run(ctx, "ctr", "--namespace", ContainerdNamespace, "images", "import", "--local", file)
		os.Remove(file)
		if err != nil {
			return fmt.Errorf("import image %s: %w", e.Ref, err)
		}
		n.say("imported %s (%d KiB) in %.1fs", e.Ref, e.Size/1024, time.Since(t).Seconds())
	}
	n.say("imported %d images in %.1fs", len(ix.Images), time.Since(start).Seconds())
	return nil
}

// download fetches u into file, with the Fetcher's retries, and checks it
// against the index entry.
func (n Node) download(ctx context.Context, u, file string, e imagebundle.Entry) error {
	return n.Fetch.Do(ctx, "get "+u, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return permanentError{err}
		}
		client := n.Fetch.Client
		if client == nil {
			// An archive of 100 MiB checked by a slow (emulated) machine can
			// take minutes; the timeout is for a hung server, not a slow one.
			client = &http.Client{Timeout: ArchiveTimeout}
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := statusError(resp, nil); err != nil {
			return err
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return permanentError{err}
		}
		h := sha256.New()
		size, err := io.Copy(io.MultiWriter(f, h), resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); size != e.Size || got != e.Digest {
			// A truncated or corrupted transfer: worth another try.
			return fmt.Errorf("archive is %d bytes %s, the index says %d bytes %s", size, got, e.Size, e.Digest)
		}
		return nil
	})
}

func resolve(base, rel string) (string, error) {
	b, err := http.NewRequest(http.MethodGet, base, nil)
	if err != nil {
		return "", err
	}
	r, err := b.URL.Parse(rel)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}
