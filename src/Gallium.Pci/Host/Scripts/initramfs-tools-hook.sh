#!/bin/sh
# initramfs-tools hook written by Gallium.PciPassthrough (Enable-GalliumPciPassthrough); rewritten on the next Enable.
# Copies the apply script, the records and any pending change into the initramfs, so the init-top script
# gallium-vfio sets driver_override for the recorded devices before the initramfs' udev loads a driver (REFERENCE §8.2).
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "${1:-}" in
    prereqs) prereqs; exit 0 ;;
esac
. /usr/share/initramfs-tools/hook-functions
script=@SCRIPT@
config=@CONFIG@
[ -x "$script" ] || exit 0
copy_file script "$script" || [ $? = 1 ] || exit 1     # 1 = already there
# What the script runs besides the shell's builtins (busybox provides them when BUSYBOX=y; klibc has no stat or id).
for b in cat readlink stat id; do
    p=$(command -v "$b") && { copy_exec "$p" || [ $? = 1 ] || exit 1; }
done
for f in "$config"/pci.d/* "$config"/pending.d/*; do
    [ -f "$f" ] || continue
    copy_file record "$f" || [ $? = 1 ] || exit 1
done
exit 0
