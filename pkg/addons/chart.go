package addons

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/getter"
	"helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DefaultFetchTimeout bounds each request to a chart repository or registry.
const DefaultFetchTimeout = 30 * time.Second

// fetcher reads charts from disk, HTTPS repositories and OCI registries.
type fetcher struct {
	// timeout bounds each HTTP request.
	timeout time.Duration
	// tmp holds downloaded repository indexes.
	tmp string
}

// loadChart reads c's chart and checks its version against c.Version.
// Remote charts are fetched over HTTPS with c's CA file and credentials.
func (f *fetcher) loadChart(ctx context.Context, c *inventory.Chart) (*chart.Chart, error) {
	var ch *chart.Chart
	var err error
	switch c.Source {
	case inventory.ChartLocal:
		ch, err = loader.Load(c.Ref)
		if err != nil {
			return nil, fmt.Errorf("load chart %s: %w", c.Ref, err)
		}
	case inventory.ChartRepository, inventory.ChartURL:
		ch, err = f.fetchHTTP(ctx, c)
	case inventory.ChartOCI:
		ch, err = f.fetchOCI(ctx, c)
	default:
		return nil, fmt.Errorf("chart %s: unknown source %q", c.Ref, c.Source)
	}
	if err != nil {
		return nil, err
	}
	if err := ch.Validate(); err != nil {
		return nil, fmt.Errorf("chart %s is not a valid chart: %w", c.Ref, err)
	}
	if c.Version != "" && c.Source != inventory.ChartRepository && c.Source != inventory.ChartOCI {
		if err := matchVersion(c.Version, ch.Metadata.Version); err != nil {
			return nil, fmt.Errorf("chart %s is %s %s: %w", c.Ref, ch.Metadata.Name, ch.Metadata.Version, err)
		}
	}
	return ch, nil
}

// matchVersion checks version against want, an exact version or a constraint.
func matchVersion(want, version string) error {
	cons, err := semver.NewConstraint(want)
	if err != nil {
		return fmt.Errorf("version %q in the inventory is not a version or constraint: %w", want, err)
	}
	v, err := semver.NewVersion(version)
	if err != nil {
		return fmt.Errorf("its version %q is not semantic: %w", version, err)
	}
	if !cons.Check(v) {
		return fmt.Errorf("the inventory asks for version %s", want)
	}
	return nil
}

// transport is the HTTP transport for c's repository or registry: the
// system's roots plus c's CA file, bounded dials and handshakes.
func (f *fetcher) transport(c *inventory.Chart) (*http.Transport, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CAFile)
		}
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   min(10*time.Second, f.timeout),
		ResponseHeaderTimeout: f.timeout,
		DisableCompression:    true,
	}, nil
}

// credentials resolves c's repository password.
func credentials(c *inventory.Chart) (user, pass string, err error) {
	if c.Password.IsZero() {
		return c.Username, "", nil
	}
	s, err := c.Password.Resolve()
	if err != nil {
		return "", "", err
	}
	return c.Username, s.Reveal(), nil
}

// fetchHTTP reads a chart from an HTTPS chart repository (its index.yaml
// names the archive and its digest) or an archive URL.
func (f *fetcher) fetchHTTP(ctx context.Context, c *inventory.Chart) (*chart.Chart, error) {
	tr, err := f.transport(c)
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	user, pass, err := credentials(c)
	if err != nil {
		return nil, err
	}
	g, err := getter.NewHTTPGetter(getter.WithTransport(tr), getter.WithTimeout(f.timeout))
	if err != nil {
		return nil, err
	}
	get := func(url string, auth bool) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opts := []getter.Option{}
		if auth && user != "" {
			opts = append(opts, getter.WithBasicAuth(user, pass))
		}
		buf, err := g.Get(url, opts...)
		if err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	url, digest := c.Ref, ""
	if c.Source == inventory.ChartRepository {
		indexURL := strings.TrimSuffix(c.Repo, "/") + "/index.yaml"
		b, err := get(indexURL, true)
		if err != nil {
			return nil, fmt.Errorf("read chart repository %s: %w%s", c.Repo, err, reachHint(err, f.timeout))
		}
		path := filepath.Join(f.tmp, fmt.Sprintf("index-%x.yaml", sha256.Sum256([]byte(c.Repo))))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("read chart repository %s: %w", c.Repo, err)
		}
		idx, err := repo.LoadIndexFile(path)
		if err != nil {
			return nil, fmt.Errorf("read chart repository %s: %s is not a chart repository index: %w", c.Repo, indexURL, err)
		}
		cv, err := idx.Get(c.Ref, c.Version)
		if err != nil {
			var have []string
			for _, v := range idx.Entries[c.Ref] {
				have = append(have, v.Version)
			}
			if len(have) == 0 {
				return nil, fmt.Errorf("chart repository %s has no chart %q", c.Repo, c.Ref)
			}
			return nil, fmt.Errorf("chart repository %s has no version %s of %s (it has %s)", c.Repo, c.Version, c.Ref, strings.Join(have, ", "))
		}
		if len(cv.URLs) == 0 {
			return nil, fmt.Errorf("chart repository %s lists %s %s without a download URL", c.Repo, c.Ref, cv.Version)
		}
		url, err = repo.ResolveReferenceURL(c.Repo, cv.URLs[0])
		if err != nil {
			return nil, fmt.Errorf("chart repository %s: %s %s: %w", c.Repo, c.Ref, cv.Version, err)
		}
		if !strings.HasPrefix(url, "https://") {
			return nil, fmt.Errorf("chart repository %s points %s %s at %s: only https:// is fetched", c.Repo, c.Ref, cv.Version, url)
		}
		digest = cv.Digest
	}
	// Credentials go only to the repository's own host.
	b, err := get(url, sameHost(url, c.Repo) || c.Source == inventory.ChartURL)
	if err != nil {
		return nil, fmt.Errorf("download chart %s: %w%s", url, err, reachHint(err, f.timeout))
	}
	if digest != "" {
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != strings.TrimPrefix(digest, "sha256:") {
			return nil, fmt.Errorf("download chart %s: sha256 %s, but the repository index says %s", url, got, digest)
		}
	}
	ch, err := loader.LoadArchive(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", url, err)
	}
	return ch, nil
}

// reachHint says what to check after a failed request to a repository or
// registry.
func reachHint(err error, timeout time.Duration) string {
	var unknownCA x509.UnknownAuthorityError
	var netErr net.Error
	switch {
	case errors.As(err, &unknownCA) || strings.Contains(err.Error(), "x509:"):
		return " (if it uses a site certificate authority, give its PEM bundle as caFile:)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf(" (no answer within %s: is it reachable from this host?)", timeout)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET):
		return " (the connection was refused or closed: is the URL an HTTPS service reachable from this host?)"
	}
	return ""
}

func sameHost(a, b string) bool {
	hostOf := func(s string) string {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
		h, _, _ := strings.Cut(s, "/")
		return h
	}
	return b != "" && hostOf(a) == hostOf(b)
}

// fetchOCI pulls a chart from an OCI registry.
func (f *fetcher) fetchOCI(ctx context.Context, c *inventory.Chart) (*chart.Chart, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tr, err := f.transport(c)
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	user, pass, err := credentials(c)
	if err != nil {
		return nil, err
	}
	opts := []registry.ClientOption{
		registry.ClientOptHTTPClient(&http.Client{Transport: tr, Timeout: f.timeout}),
		// Credentials only from the inventory, never from a docker or helm
		// login file of whoever runs the provisioner.
		registry.ClientOptCredentialsFile(filepath.Join(f.tmp, "registry-config.json")),
	}
	if user != "" {
		opts = append(opts, registry.ClientOptBasicAuth(user, pass))
	}
	rc, err := registry.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("pull chart %s: %w", c.Ref, err)
	}
	ref := strings.TrimPrefix(c.Ref, "oci://")
	tag, err := f.ociTag(rc, ref, c.Version)
	if err != nil {
		return nil, fmt.Errorf("pull chart %s: %w%s", c.Ref, err, reachHint(err, f.timeout))
	}
	res, err := rc.Pull(ref + ":" + tag)
	if err != nil {
		return nil, fmt.Errorf("pull chart %s:%s: %w%s", c.Ref, tag, err, reachHint(err, f.timeout))
	}
	ch, err := loader.LoadArchive(bytes.NewReader(res.Chart.Data))
	if err != nil {
		return nil, fmt.Errorf("load chart %s:%s: %w", c.Ref, tag, err)
	}
	return ch, nil
}

// ociTag returns the tag of version: the version itself when it is exact
// (with '+' written '_', as Helm pushes it), else the highest tag that
// meets the constraint.
func (f *fetcher) ociTag(rc *registry.Client, ref, version string) (string, error) {
	if _, err := semver.StrictNewVersion(version); err == nil {
		return strings.ReplaceAll(version, "+", "_"), nil
	}
	cons, err := semver.NewConstraint(version)
	if err != nil {
		return "", fmt.Errorf("version %q is not a version or constraint: %w", version, err)
	}
	tags, err := rc.Tags(ref)
	if err != nil {
		return "", fmt.Errorf("list tags: %w", err)
	}
	var best *semver.Version
	bestTag := ""
	for _, t := range tags {
		v, err := semver.NewVersion(strings.ReplaceAll(t, "_", "+"))
		if err != nil || !cons.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best) {
			best, bestTag = v, t
		}
	}
	if best == nil {
		slices.Sort(tags)
		return "", fmt.Errorf("no tag meets version %s (tags: %s)", version, strings.Join(tags, ", "))
	}
	return bestTag, nil
}

type chartFile = common.File

// chartDigest is a digest of every file of ch, its subcharts included: two
// charts with the same digest render the same.
func chartDigest(ch *chart.Chart) string {
	h := sha256.New()
	var walk func(c *chart.Chart, prefix string)
	walk = func(c *chart.Chart, prefix string) {
		files := slices.Clone(c.Raw)
		slices.SortFunc(files, func(a, b *chartFile) int { return strings.Compare(a.Name, b.Name) })
		for _, f := range files {
			fmt.Fprintf(h, "%s%s\x00%d\x00", prefix, f.Name, len(f.Data))
			h.Write(f.Data)
		}
		deps := slices.Clone(c.Dependencies())
		slices.SortFunc(deps, func(a, b *chart.Chart) int { return strings.Compare(a.Name(), b.Name()) })
		for _, d := range deps {
			walk(d, prefix+"charts/"+d.Name()+"/")
		}
	}
	walk(ch, "")
	return hex.EncodeToString(h.Sum(nil))
}
