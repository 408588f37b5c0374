#!/usr/bin/env bash
# build-binaries.sh builds the node image's upstream programs from the Go
# module proxy into DEST (default images/node/.cache/bin):
#   kubelet, kubeadm, kube-proxy   k8s.io/kubernetes (tools/kube/go.mod)
#   crictl                         sigs.k8s.io/cri-tools (tools/crictl/go.mod)
#   containerd, containerd-shim-runc-v2, ctr
#                                  github.com/containerd/containerd/v2 (tools/containerd/go.mod)
#   coredns                        github.com/coredns/coredns with the plugins
#                                  kubeadm's Corefile uses (tools/coredns)
# Each module pins its versions in its own go.mod/go.sum; -mod=readonly
# refuses to change them. Binaries are static (CGO_ENABLED=0), stripped and
# built with -trimpath, so the same toolchain gives the same bytes.
# A stamp per group skips groups already built at the pinned versions.
#
# Usage: images/node/build-binaries.sh [DEST]    (NICE=0 to not lower priority)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/.cache/bin}"
mkdir -p "$dest"

# Keep in step with tools/*/go.mod (and test/tools for kubernetes).
k8s_version="v1.37.2"
crictl_version="v1.37.0"
containerd_version="v2.4.2"
coredns_version="v1.14.6"

run() {
	if [[ "${NICE:-1}" != 0 ]]; then nice -n 10 "$@"; else "$@"; fi
}

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
gover="$(go env GOVERSION)"

# built GROUP WANT FILE... is true when GROUP's stamp says WANT and every FILE exists.
built() {
	local group=$1 want=$2
	shift 2
	[[ -f "$dest/.stamp-$group" && "$(cat "$dest/.stamp-$group")" == "$want" ]] || return 1
	for f in "$@"; do [[ -x "$dest/$f" ]] || return 1; done
}

start=$SECONDS

# Kubernetes reads its own version from ldflags; without them kubeadm
# reports a placeholder version and refuses real ones.
want="kubernetes=$k8s_version go=$gover"
if ! built kube "$want" kubelet kubeadm kube-proxy; then
	minor="${k8s_version#v}"; major="${minor%%.*}"; minor="${minor#*.}"; minor="${minor%%.*}"
	vpkg="k8s.io/component-base/version"
	ldflags="-s -w -X ${vpkg}.gitVersion=${k8s_version} -X ${vpkg}.gitMajor=${major} -X ${vpkg}.gitMinor=${minor}
 -X ${vpkg}.gitTreeState=clean -X ${vpkg}.gitCommit=0000000000000000000000000000000000000000
 -X ${vpkg}.buildDate=1970-01-01T00:00:00Z"
	for cmd in kubelet kubeadm kube-proxy; do
		echo "build-binaries: $cmd $k8s_version"
		(cd "$here/tools/kube" && run go build -ldflags "$ldflags" -o "$dest/$cmd" "k8s.io/kubernetes/cmd/$cmd")
	done
	echo "$want" >"$dest/.stamp-kube"
fi

want="cri-tools=$crictl_version go=$gover"
if ! built crictl "$want" crictl; then
	echo "build-binaries: crictl $crictl_version"
	(cd "$here/tools/crictl" && run go build -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl_version" \
		-o "$dest/crictl" sigs.k8s.io/cri-tools/cmd/crictl)
	echo "$want" >"$dest/.stamp-crictl"
fi

want="containerd=$containerd_version go=$gover"
if ! built containerd "$want" containerd containerd-shim-runc-v2 ctr; then
	vpkg="github.com/containerd/containerd/v2/version"
	ldflags="-s -w -X $vpkg.Version=$containerd_version -X $vpkg.Revision=release-$containerd_version"
	for cmd in containerd containerd-shim-runc-v2 ctr; do
		echo "build-binaries: $cmd $containerd_version"
		# no_btrfs/no_devmapper/no_zfs: the node image uses the overlayfs snapshotter only.
		(cd "$here/tools/containerd" && run go build -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" \
			-o "$dest/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd")
	done
	echo "$want" >"$dest/.stamp-containerd"
fi

want="coredns=$coredns_version go=$gover"
if ! built coredns "$want" coredns; then
	echo "build-binaries: coredns $coredns_version"
	(cd "$here/tools/coredns" && run go build -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$coredns_version" \
		-o "$dest/coredns" .)
	echo "$want" >"$dest/.stamp-coredns"
fi

echo "build-binaries: done in $((SECONDS - start))s into $dest"
