#!/usr/bin/env bash
# build.sh builds the Slipway node image: a kernel (vmlinuz) and one
# initramfs (initrd.img) that holds a stage-1 init and the node's whole root
# filesystem as a squashfs, made from Debian 12 packages (packages.txt) plus
# kubelet, kubeadm, crictl and containerd built from the Go module proxy
# (build-binaries.sh) and Slipway's node agent (cmd/slipway-node).
#
# Usage: images/node/build.sh [--refresh]     (as root: chroot, file owners)
#   --refresh   resolve the package list against apt again (new versions)
# Environment:
#   CACHE               cache and output root (default images/node/.cache)
#   SOURCE_DATE_EPOCH   every timestamp in the image (default: the commit
#                       time of the last change to images/node)
#
# Offline after the first run: the .debs stay in CACHE/debs and their exact
# versions in CACHE/packages.lock; a run with both present contacts nothing
# (the Go module cache must hold the modules too). Deterministic: the same
# lock, binaries and SOURCE_DATE_EPOCH give byte-identical outputs (sorted
# archives, fixed timestamps and owners, reproducible squashfs).
#
# Outputs in CACHE/out: vmlinuz, initrd.img, packages.lock, manifest.txt
# (sizes, versions, build time), SHA256SUMS; CACHE/root is the unpacked root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CACHE:-$here/.cache}"
refresh=0
[[ "${1:-}" == "--refresh" ]] && refresh=1

if [[ $(id -u) != 0 ]]; then
	echo "build.sh: run as root (it unpacks packages with their owners and runs depmod/ldconfig in a chroot)" >&2
	exit 1
fi
for tool in apt-get dpkg-deb mksquashfs cpio chroot; do
	command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install squashfs-tools cpio)" >&2; exit 1; }
done

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct -- images/node 2>/dev/null || true)
	SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
fi
export SOURCE_DATE_EPOCH LC_ALL=C TZ=UTC
start=$SECONDS
phase() { echo "build.sh: [$((SECONDS - start))s] $*"; }

debs="$cache/debs" work="$cache/work" out="$cache/out" bin="$cache/bin"
mkdir -p "$debs/partial" "$out"
chmod 755 "$cache" "$debs" "$debs/partial" # apt's _apt user downloads into it

# --- 1. packages ---------------------------------------------------------
lock="$cache/packages.lock"
pkgs=$(grep -v '^#' "$here/packages.txt" | awk 'NF {print $1}')
# The kernel: the ABI package behind linux-image-amd64 (unpacked separately).
if [[ $refresh == 1 || ! -s "$lock" ]]; then
	phase "resolving packages with apt"
	kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[[ -n "$kpkg" ]] || { echo "build.sh: cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
	# An empty dpkg status makes apt resolve the whole closure, not what the
	# build machine happens to have installed.
	st="$cache/apt-status"
	: >"$st"
	# shellcheck disable=SC2086
	apt-get -q -s -o Dir::State::status="$st" -o APT::Install-Recommends=false \
		install $pkgs "$kpkg" busybox-static |
		awk '/^Inst /{v=$3; gsub(/[()]/, "", v); print $2 "=" v}' | sort >"$lock.new"
	mv "$lock.new" "$lock"
fi
phase "fetching $(wc -l <"$lock") packages (cached ones are kept)"
missing=()
while IFS== read -r p v; do
	# apt-get download names a file PACKAGE_VERSION_ARCH.deb, ':' as %3a.
	ls "$debs/${p}_${v//:/%3a}_"*.deb >/dev/null 2>&1 || missing+=("$p=$v")
done <"$lock"
if ((${#missing[@]})); then
	(cd "$debs" && apt-get -q download "${missing[@]}")
fi
deb_of() { # deb_of PACKAGE prints the cached .deb of the locked version
	local v
	v=$(awk -F= -v p="$1" '$1==p {print $2}' "$lock")
	for d in "$debs/${1}_${v//:/%3a}_"*.deb; do
		[[ -f "$d" ]] && { echo "$d"; return; }
	done
	echo "build.sh: no .deb for $1=$v in $debs" >&2
	return 1
}

# --- 2. programs from the Go module proxy and the node agent --------------
phase "building kubelet, kubeadm, kube-proxy, crictl, containerd, coredns"
"$here/build-binaries.sh" "$bin"
phase "building slipway-node and pause"
for p in cmd/slipway-node images/node/pause; do
	(cd "$repo" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false" \
		go build -ldflags "-s -w" -o "$bin/$(basename "$p")" "./$p")
done
k8s_version=$("$bin/kubeadm" version -o short)
pause_image=$("$bin/kubeadm" config images list --kubernetes-version "$k8s_version" 2>/dev/null | grep '/pause:')

# --- 3. the root filesystem ------------------------------------------------
phase "unpacking packages into the root"
# The root stays in CACHE/root after the build: the bundle's kube-proxy image
# takes iptables from it.
root="$cache/root"
rm -rf "$work" "$root"
mkdir -p "$work" "$root"
# Merged /usr, as Debian 12 installs it: the packages' /bin, /sbin, /lib*
# land in /usr through these links (tar keeps them, see below).
for d in bin sbin lib lib64; do
	mkdir -p "$root/usr/$d"
	ln -s "usr/$d" "$root/$d"
done
kpkg=$(awk -F= '/^linux-image-[0-9]/{print $1}' "$lock")
while IFS== read -r p _; do
	case "$p" in linux-image-*|busybox-static) continue ;; esac
	dpkg-deb --fsys-tarfile "$(deb_of "$p")" | tar -x --keep-directory-symlink -C "$root"
done <"$lock"

# What the packages' maintainer scripts would have done, done here once:
# users and groups, the alternatives the image uses, the linker cache.
cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"
: >"$root/etc/shadow"; chmod 640 "$root/etc/shadow"
: >"$root/etc/gshadow"; chmod 640 "$root/etc/gshadow"
awk -F: '{print $1 ":*:19000:0:99999:7:::"}' "$root/etc/passwd" >"$root/etc/shadow"
awk -F: '{print $1 ":*::"}' "$root/etc/group" >"$root/etc/gshadow"
for alt in iptables ip6tables; do
	for suffix in "" -restore -save; do
		ln -sf "xtables-nft-multi" "$root/usr/sbin/$alt$suffix"
	done
done
ln -sf mawk "$root/usr/bin/awk"
[[ -e "$root/usr/bin/sh" ]] || ln -s dash "$root/usr/bin/sh"
# base-files' postinst: /var/run and /var/lock are links into /run (the CRI
# socket is addressed as /var/run/containerd/containerd.sock).
rm -rf "$root/var/run" "$root/var/lock"
ln -s /run "$root/var/run"
ln -s /run/lock "$root/var/lock"
# Stateless: systemd makes a fresh machine ID at every boot.
: >"$root/etc/machine-id"
mkdir -p "$root/var/lib/dbus"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

phase "kernel modules and configuration"
kroot="$work/kernel"
mkdir -p "$kroot"
dpkg-deb --fsys-tarfile "$(deb_of "$kpkg")" | tar -x -C "$kroot"
abi=${kpkg#linux-image-}
mkdir -p "$root/usr/lib/modules/$abi" "$root/boot"
cp "$kroot/boot/config-$abi" "$root/boot/" # kubeadm's SystemVerification reads it
cp "$kroot"/lib/modules/"$abi"/modules.{builtin,builtin.modinfo,order} "$root/usr/lib/modules/$abi/"
# Servers, not desktops: every module except sound, graphics, media, radio
# and USB gadgets (the squashfs keeps the rest compressed).
(cd "$kroot/lib/modules/$abi" && find kernel -name '*.ko' \
	-not -path 'kernel/sound/*' -not -path 'kernel/drivers/gpu/*' -not -path 'kernel/drivers/media/*' \
	-not -path 'kernel/drivers/staging/*' -not -path 'kernel/drivers/iio/*' -not -path 'kernel/drivers/net/wireless/*' \
	-not -path 'kernel/net/wireless/*' -not -path 'kernel/net/mac80211/*' -not -path 'kernel/drivers/bluetooth/*' \
	-not -path 'kernel/net/bluetooth/*' -not -path 'kernel/drivers/usb/gadget/*' -not -path 'kernel/drivers/input/*' |
	sort | cpio -pdm --quiet "$root/usr/lib/modules/$abi")
cp "$kroot/boot/vmlinuz-$abi" "$out/vmlinuz.new"

phase "Slipway's files and the programs"
cp -a "$here/rootfs/." "$root/"
sed -i "s#@PAUSE_IMAGE@#$pause_image#" "$root/etc/containerd/config.toml"
for b in kubelet kubeadm crictl containerd containerd-shim-runc-v2 ctr slipway-node; do
	install -m 0755 "$bin/$b" "$root/usr/bin/$b"
done
mkdir -p "$root/opt/cni/bin" "$root/etc/cni/net.d" "$root/var/lib/containerd" "$root/var/lib/kubelet" \
	"$root/etc/kubernetes/manifests" "$root/usr/share/doc/slipway" "$root/etc/systemd/network"
cp "$here/README.md" "$root/usr/share/doc/slipway/README.md"
printf 'SLIPWAY_KUBERNETES_VERSION=%s\nSLIPWAY_PAUSE_IMAGE=%s\nSLIPWAY_IMAGE_EPOCH=%s\n' \
	"$k8s_version" "$pause_image" "$SOURCE_DATE_EPOCH" >"$root/etc/slipway-release"

phase "users, linker cache, module index, enabled units (in a chroot)"
chroot "$root" /usr/bin/systemd-sysusers >/dev/null
chroot "$root" /usr/sbin/ldconfig
chroot "$root" /usr/sbin/depmod -a "$abi"
systemctl_root() { chroot "$root" /usr/bin/systemctl "$@" >/dev/null 2>&1; }
# Only what the node needs is enabled (no presets: they would enable, say,
# the CNI plugins' DHCP daemon). Units Debian ships enabled in its packages
# (dbus.socket, udev's sockets) are already linked.
chroot "$root" /usr/bin/systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
	systemd-resolved.service systemd-timesyncd.service containerd.service kubelet.service \
	slipway-images.service slipway-config.service
# No login prompt by default on a stateless node; the console shows the boot.
systemctl_root mask getty@tty1.service || true
chroot "$root" /usr/bin/systemctl set-default multi-user.target
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# Files that differ from build to build and are not needed.
rm -rf "$root/var/cache/ldconfig/aux-cache" "$root/var/log/"* "$root/var/cache/debconf/"*-old \
	"$root/usr/share/doc/"*/changelog* "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale"

phase "squashfs root"
# mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$work/root.sqfs" -noappend -comp zstd -Xcompression-level 9 -b 1M \
	-reproducible -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" -no-xattrs -quiet >/dev/null

phase "stage-1 initramfs"
s1="$work/stage1"
mkdir -p "$s1"/{bin,dev,proc,sys,run,sysroot,lib/modules}
mkdir -p "$work/busybox"
dpkg-deb --fsys-tarfile "$(deb_of busybox-static)" | tar -x -C "$work/busybox"
install -m 0755 "$(find "$work/busybox" -type f -name busybox -perm -u+x | sort | head -n1)" "$s1/bin/busybox"
install -m 0755 "$here/stage1/init" "$s1/init"
: >"$s1/lib/modules/load-order"
for m in loop squashfs overlay; do
	for dep in $(chroot "$root" /usr/sbin/modinfo -k "$abi" -F depends "$m" | tr ',' ' ') "$m"; do
		grep -qx "$dep" "$s1/lib/modules/load-order" && continue
		f=$(chroot "$root" /usr/sbin/modinfo -k "$abi" -n "$dep")
		cp "$root$f" "$s1/lib/modules/$dep.ko"
		echo "$dep" >>"$s1/lib/modules/load-order"
	done
done
mv "$work/root.sqfs" "$s1/root.sqfs"
# newc cpio, sorted, every file owned by root with the same timestamp. The
# squashfs inside is compressed already, so the archive is not.
find "$s1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$s1" && find . -mindepth 1 | sort |
	cpio -o -H newc -R 0:0 --reproducible --quiet) >"$out/initrd.img.new"
mv "$out/initrd.img.new" "$out/initrd.img"
mv "$out/vmlinuz.new" "$out/vmlinuz"
cp "$lock" "$out/packages.lock"

phase "manifest"
root_kib=$(du -sk "$root" | cut -f1)
{
	echo "slipway node image"
	echo "kubernetes $k8s_version (kubelet, kubeadm from the Go module proxy)"
	echo "containerd $("$bin/containerd" --version | awk '{print $3}') (Go module proxy), runc $(awk -F= '$1=="runc"{print $2}' "$lock") (Debian)"
	echo "crictl $("$bin/crictl" --version | awk '{print $3}')"
	echo "kernel $abi"
	echo "pause image $pause_image"
	echo "packages $(wc -l <"$lock") (packages.lock)"
	echo "root filesystem $((root_kib / 1024)) MiB unpacked, squashfs $(($(stat -c %s "$s1/root.sqfs") / 1048576)) MiB"
	echo "initrd.img $(($(stat -c %s "$out/initrd.img") / 1048576)) MiB, vmlinuz $(($(stat -c %s "$out/vmlinuz") / 1048576)) MiB"
	echo "SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"
	echo "build time $((SECONDS - start)) s (this run; cached binaries and packages are not rebuilt)"
} >"$out/manifest.txt"
(cd "$out" && sha256sum vmlinuz initrd.img packages.lock >SHA256SUMS)
rm -rf "$work"
cat "$out/manifest.txt"
phase "done: $out"
