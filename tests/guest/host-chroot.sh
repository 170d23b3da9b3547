#!/usr/bin/env bash
# Runs a command on THIS machine, natively, in the same root the test guest boots (REFERENCE §1: this machine's userland
# under a throwaway tmpfs overlay), with a guest persistent disk's paths bound in and the guest kernel's module tree at
# /lib/modules/<ver>. boot-binding-test.sh uses it between boots for what a kernel package's postinst does on a host
# (update-initramfs -c, dracut): the same programs and the same files Enable wrote on the disk, without the minutes
# mkinitramfs takes under TCG.
# Usage: host-chroot.sh --disk FILE --kernel KDIR [--persist-path PATH[:DST]]... [--bind SRC:DST]... -- COMMAND [ARG]...
#   --persist-path PATH[:DST]  the disk's root/PATH (created on the disk if missing) at DST in the chroot (default PATH),
#                        as run-guest.sh --persist-path gives the guest
#   --bind SRC:DST       a host file or directory SRC at DST in the chroot
# COMMAND runs as root with env -i and a systemd unit's PATH; its exit code is ours. Needs root (mount namespaces and a
# loop device). Nothing leaks out: everything is mounted in a private mount namespace and unmounted on exit; the only
# writes that outlive it land on the disk image. /sys is not mounted in the chroot (nothing here may write to this
# machine's devices, REFERENCE §7).
set -euo pipefail
disk="" kdir="" paths=() binds=()
while [ $# -gt 0 ]; do
    case "$1" in
        --disk) disk="$(cd "$(dirname "${2:?}")" && pwd)/$(basename "$2")"; shift ;;
        --kernel) kdir="$(cd "${2:?}" && pwd)"; shift ;;
        --persist-path) [[ "${2:?}" =~ ^(/[A-Za-z0-9._-]+)+(:(/[A-Za-z0-9._-]+)+)?$ ]] || { echo "host-chroot: --persist-path takes an absolute path[:path]" >&2; exit 2; }
                        paths+=("$2"); shift ;;
        --bind) [[ "${2:?}" == /*:/* ]] || { echo "host-chroot: --bind takes SRC:DST (absolute paths)" >&2; exit 2; }
                binds+=("$2"); shift ;;
        --) shift; break ;;
        *) echo "host-chroot: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ $# -gt 0 ] && [ -f "$disk" ] && [ -d "$kdir/lib/modules" ] \
    || { echo "host-chroot: usage: host-chroot.sh --disk FILE --kernel KDIR [--persist-path P]... [--bind S:D]... -- COMMAND" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "host-chroot: needs root (a private mount namespace and a loop device)" >&2; exit 2; }
ver="$(basename "$(ls -d "$kdir"/lib/modules/*/ | head -n1)")"

if [ "${GALLIUM_HOST_CHROOT_INSIDE:-}" != 1 ]; then
    top="$(mktemp -d "${TMPDIR:-/tmp}/gallium-host-chroot.XXXXXX")"
    again=(--disk "$disk" --kernel "$kdir")
    for p in "${paths[@]}"; do again+=(--persist-path "$p"); done
    for b in "${binds[@]}"; do again+=(--bind "$b"); done
    rc=0
    # --propagation private: no mount made below reaches this machine's own mount namespace.
    GALLIUM_HOST_CHROOT_INSIDE=1 GALLIUM_HOST_CHROOT_TOP="$top" unshare --mount --propagation private \
        bash "${BASH_SOURCE[0]}" "${again[@]}" -- "$@" || rc=$?
    rmdir "$top"/disk "$top"/ov "$top"/root "$top" 2>/dev/null || true
    exit "$rc"
fi

top=${GALLIUM_HOST_CHROOT_TOP:?}
r=$top/root
mounted=()
mnt() { mount "$@"; mounted+=("${!#}"); }   # the last argument is the mount point
cleanup() {
    local i
    sync
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}"; done
}
trap cleanup EXIT
mkdir -p "$top/disk" "$top/ov" "$r"
mnt -o loop "$disk" "$top/disk"
mnt -t tmpfs -o mode=0755 tmpfs "$top/ov"
mkdir -p "$top/ov/u" "$top/ov/w"
mnt -t overlay overlay -o "lowerdir=/,upperdir=$top/ov/u,workdir=$top/ov/w" "$r"
mnt --bind /proc "$r/proc"
mnt --bind /dev "$r/dev"
mnt -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mnt -t tmpfs -o mode=0755 tmpfs "$r/run"
mkdir -p "$r/lib/modules/$ver"
mnt --bind "$kdir/lib/modules/$ver" "$r/lib/modules/$ver"
for p in "${paths[@]}"; do
    src=${p%%:*} dst=${p#*:}
    mkdir -p "$top/disk/root$src" "$r$dst"
    mnt --bind "$top/disk/root$src" "$r$dst"
done
for b in "${binds[@]}"; do
    src=${b%%:*} dst=${b#*:}
    if [ -d "$src" ]; then mkdir -p "$r$dst"; else mkdir -p "$(dirname "$r$dst")" && touch "$r$dst"; fi
    mnt --bind "$src" "$r$dst"
done
chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
