#!/bin/sh
# dracut pre-udev hook written by Gallium.PciPassthrough: set driver_override of every recorded device to vfio-pci
# before udev starts (REFERENCE §8.2).
script=@SCRIPT@
[ -x "$script" ] && "$script" --early
