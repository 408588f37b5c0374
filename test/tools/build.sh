#!/usr/bin/env bash
# build.sh builds the upstream components the control-plane tests run against
# (kubeadm, kube-apiserver, kube-controller-manager and kube-scheduler at the
# pinned Kubernetes version, and the etcd server kubeadm of that version expects) from the Go
# module proxy into test/tools/bin. It is idempotent: a binary whose stamp
# matches the pinned version is not rebuilt. The first build takes a long
# time (tens of minutes on two cores); the Go build cache keeps later ones fast.
#
# Usage: test/tools/build.sh            (from anywhere)
#        NICE=0 test/tools/build.sh     (do not lower the build's priority)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

k8s_version="v1.37.2"   # keep in step with go.mod's k8s.io/kubernetes
etcd_version="v3.7.0"   # kubeadm v1.37's DefaultEtcdVersion (3.7.0-0)
bin="$here/bin"
mkdir -p "$bin"

run() {
	if [[ "${NICE:-1}" != 0 ]]; then nice -n 10 "$@"; else "$@"; fi
}

# Kubernetes reads its own version from ldflags; without them kubeadm
# reports a placeholder version and refuses real ones.
minor="${k8s_version#v}"; major="${minor%%.*}"; minor="${minor#*.}"; minor="${minor%%.*}"
vpkg="k8s.io/component-base/version"
ldflags="-s -w \
 -X ${vpkg}.gitVersion=${k8s_version} \
 -X ${vpkg}.gitMajor=${major} \
 -X ${vpkg}.gitMinor=${minor} \
 -X ${vpkg}.gitTreeState=clean \
 -X ${vpkg}.gitCommit=0000000000000000000000000000000000000000 \
 -X ${vpkg}.buildDate=1970-01-01T00:00:00Z"

stamp="$bin/.versions"
want="kubernetes=${k8s_version} etcd=${etcd_version} go=$(go env GOVERSION)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
	[[ -x "$bin/kubeadm" && -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kube-scheduler" && -x "$bin/etcd" ]]; then
	echo "test/tools/bin is up to date ($want)"
	exit 0
fi
rm -f "$stamp"

# go.mod and go.sum pin every module; -mod=readonly refuses to change them.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
start=$SECONDS
for cmd in kubeadm kube-apiserver kube-controller-manager kube-scheduler; do
	echo "building $cmd ${k8s_version}"
	run go build -ldflags "$ldflags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
echo "building etcd ${etcd_version}"
run go build -ldflags "-s -w" -o "$bin/etcd" "go.etcd.io/etcd/server/v3"
echo "$want" > "$stamp"
echo "built into $bin in $((SECONDS - start))s"
