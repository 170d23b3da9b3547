#!/usr/bin/env bash
# Fetch and unpack Debian's current kernel (the one linux-image-amd64 depends on) for the test guest.
# Idempotent. Last stdout line = absolute kernel dir containing boot/vmlinuz-* and lib/modules/<ver>/ (with modules.dep).
# Usage: bash tests/guest/fetch-kernel.sh            (other scripts rely on this interface: keep it)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # depmod (kmod) lives in sbin

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$here/work"
kdir="$work/kernel"
mkdir -p "$work/debs"

log() { echo "fetch-kernel: $*" >&2; }

# Resolve the versioned package from the metapackage; apt lists may be empty on a fresh CI image.
resolve_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg="$(resolve_pkg || true)"
if [ -z "$pkg" ]; then
    log "apt lists empty or stale; running apt-get update"
    apt-get update -qq >&2
    pkg="$(resolve_pkg)"
fi
[ -n "$pkg" ] || { log "cannot resolve the kernel package behind linux-image-amd64"; exit 1; }
ver="${pkg#linux-image-}"

# Already unpacked and indexed for this version: nothing to do.
if [ -f "$kdir/boot/vmlinuz-$ver" ] && [ -s "$kdir/lib/modules/$ver/modules.dep" ] && [ -f "$kdir/.done-$ver" ]; then
    echo "$kdir"
    exit 0
fi

deb="$(ls "$work/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$deb" ]; then
    log "downloading $pkg"
    ( cd "$work/debs" && apt-get download "$pkg" >&2 ) || {
        log "apt-get download failed; retrying after apt-get update"
        apt-get update -qq >&2
        ( cd "$work/debs" && apt-get download "$pkg" >&2 )
    }
    deb="$(ls "$work/debs/${pkg}_"*.deb | head -n1)"
    # Drop packages of older kernels (70 MB each); the current one stays for offline re-extraction.
    find "$work/debs" -name 'linux-image-*.deb' ! -name "${pkg}_*" -delete
fi

log "unpacking $deb"
rm -rf "$kdir.tmp"
mkdir -p "$kdir.tmp"
dpkg-deb -x "$deb" "$kdir.tmp"
# Debian's usrmerge may place modules under usr/lib; expose them at lib/modules as callers expect.
if [ ! -d "$kdir.tmp/lib/modules/$ver" ] && [ -d "$kdir.tmp/usr/lib/modules/$ver" ]; then
    mkdir -p "$kdir.tmp/lib"
    ln -s ../usr/lib/modules "$kdir.tmp/lib/modules"
fi
# The package ships no modules.dep (postinst runs depmod); build it so modprobe/modinfo work (REFERENCE §1).
depmod -b "$kdir.tmp" "$ver"
touch "$kdir.tmp/.done-$ver"
rm -rf "$kdir"
mv "$kdir.tmp" "$kdir"
echo "$kdir"
