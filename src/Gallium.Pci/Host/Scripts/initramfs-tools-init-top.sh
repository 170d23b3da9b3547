#!/bin/sh
# initramfs-tools init-top script written by Gallium.PciPassthrough (Enable-GalliumPciPassthrough).
# No prerequisites: init-top scripts without any run in name order (tsort), so "gallium-vfio" runs before "udev",
# which starts the initramfs' udevd and its coldplug that loads the drivers (REFERENCE §8.2).
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "${1:-}" in
    prereqs) prereqs; exit 0 ;;
esac
script=@SCRIPT@
[ -x "$script" ] && "$script" --early
exit 0
