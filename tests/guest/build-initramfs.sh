#!/usr/bin/env bash
# Build the test guest's initramfs: busybox-static, the 9p/overlay boot modules, e1000e and the vfio stack, and init.sh.
# Usage: bash tests/guest/build-initramfs.sh [KERNEL_DIR]   (default: what fetch-kernel.sh prints)
# Last stdout line = absolute path of the gzip'd cpio. Rebuilt only when the kernel, init.sh or this script changed.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # depmod/modprobe (kmod) live in sbin

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$here/work"
kdir="${1:-$(bash "$here/fetch-kernel.sh" | tail -n1)}"
kdir="$(cd "$kdir" && pwd)"
log() { echo "build-initramfs: $*" >&2; }

vmlinuz="$(ls "$kdir"/boot/vmlinuz-* | head -n1)"
ver="${vmlinuz##*/vmlinuz-}"
moddir="$kdir/lib/modules/$ver"
[ -s "$moddir/modules.dep" ] || { log "no modules.dep in $moddir (run fetch-kernel.sh)"; exit 1; }
busybox="$(command -v busybox || true)"
# ldd (libc-bin, always present) fails on a static binary; `file` is not on a fresh CI image.
[ -n "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 \
    || { log "need a static busybox (apt-get install busybox-static)"; exit 1; }

out="$work/initramfs-$ver.cpio.gz"
if [ -s "$out" ] && [ "$out" -nt "$here/init.sh" ] && [ "$out" -nt "${BASH_SOURCE[0]}" ] \
   && [ "$out" -nt "$here/initramfs-stage.sh" ] && [ "$out" -nt "$here/boot-sysinit.sh" ] && [ "$out" -nt "$moddir/modules.dep" ]; then
    echo "$out"
    exit 0
fi

# Boot set is insmod'ed by init in this order; the vfio set is only shipped (tests need vfio-pci NOT loaded at start).
boot_mods=(virtio_pci 9pnet_virtio 9p overlay e1000e)
ship_mods=(vfio-pci)
# Loaded only with run-guest.sh --persist-disk: a SATA disk on the q35 board's own AHCI controller (00:1f.2), so no PCI
# device is added and no IOMMU group number shifts; ext4 on it (crc32c_generic: ext4's checksums if crc32c-intel cannot load).
disk_mods=(ahci sd_mod crc32c_generic ext4)

# Dependency-ordered .ko paths (relative to $moddir) for the given module names, resolved from modules.dep by kmod.
ordered_kos() {
    local m
    for m in "$@"; do
        modprobe -d "$kdir" -S "$ver" --show-depends "$m" \
            | awk '$1 == "insmod" { print $2 }' \
            || { log "cannot resolve module $m for $ver"; return 1; }
    done | sed "s|^.*/lib/modules/$ver/||" | awk '!seen[$0]++'
}

stage="$(mktemp -d "$work/initramfs.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,etc,mnt/host,mnt/up,mnt/share,mnt/persist,newroot,lib/modules/"$ver"}
# The kernel opens /dev/console for init before devtmpfs exists (init.sh also reopens it, in case mknod is refused).
mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
ln -s bin "$stage/sbin"

ordered_kos "${boot_mods[@]}" > "$stage/etc/boot-modules"
ordered_kos "${disk_mods[@]}" | grep -vxF -f "$stage/etc/boot-modules" > "$stage/etc/disk-modules" || true
for ko in $(ordered_kos "${boot_mods[@]}" "${ship_mods[@]}" "${disk_mods[@]}"); do
    mkdir -p "$stage/lib/modules/$ver/$(dirname "$ko")"
    cp "$moddir/$ko" "$stage/lib/modules/$ver/$ko"
done
# A self-contained modules.dep for the shipped subset, so busybox modprobe works before the chroot too.
cp "$moddir"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$ver/" 2>/dev/null || true
depmod -b "$stage" "$ver"

install -m 0755 "$here/init.sh" "$stage/init"
# --initramfs-stage and --udev (init.sh): the initramfs' part of a boot and systemd's sysinit part.
install -m 0755 "$here/initramfs-stage.sh" "$stage/etc/initramfs-stage.sh"
install -m 0755 "$here/boot-sysinit.sh" "$stage/etc/boot-sysinit.sh"
log "boot modules: $(tr '\n' ' ' < "$stage/etc/boot-modules")"
log "disk modules (--persist-disk): $(tr '\n' ' ' < "$stage/etc/disk-modules")"
( cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet ) | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
