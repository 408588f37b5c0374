#!/bin/sh
# fetch-kernel.sh: download Debian's current amd64 kernel package (without
# installing it) and unpack it under test/e2e/.cache/kernel, where the e2e
# tests build their busybox node image from. CI (.ci/run) calls this once
# after apt-get update; it is idempotent and needs no root.
#
# Usage: test/e2e/fetch-kernel.sh [DEST]   (default: test/e2e/.cache/kernel)
# Result: DEST/boot/vmlinuz-<abi> and DEST/lib/modules/<abi>/..., and
# DEST/ABI holding the ABI name (for example 6.1.0-56-amd64).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-"$here/.cache/kernel"}

# The meta package depends on the ABI-named package, whose name changes with
# every kernel ABI bump, so resolve it instead of hard-coding it.
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$pkg" ]; then
	echo "fetch-kernel: cannot resolve the kernel package behind linux-image-amd64 (run apt-get update first)" >&2
	exit 1
fi
abi=${pkg#linux-image-}

if [ -f "$dest/ABI" ] && [ "$(cat "$dest/ABI")" = "$abi" ] && [ -f "$dest/boot/vmlinuz-$abi" ]; then
	echo "fetch-kernel: $pkg already unpacked in $dest"
	exit 0
fi

tmp=$(mktemp -d)
chmod 755 "$tmp" # apt-get download drops to the _apt user, which must reach it
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "$pkg" >/dev/null)
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dest"
echo "$abi" > "$dest/ABI"
echo "fetch-kernel: unpacked $pkg into $dest"
