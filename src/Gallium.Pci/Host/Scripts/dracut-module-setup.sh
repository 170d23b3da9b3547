#!/bin/bash
# dracut module written by Gallium.PciPassthrough (Enable-GalliumPciPassthrough); rewritten on the next Enable.
# Carries the apply script, the records and any pending change into the initramfs, and runs the script's --early
# mode as a pre-udev hook, before the initramfs' udev loads a driver (REFERENCE §8.2).
script=@SCRIPT@
config=@CONFIG@

check() {
    [ -x "$script" ] || return 1
    return 0
}

depends() {
    return 0
}

install() {
    inst_script "$script" "$script"
    inst_multiple cat readlink stat id
    local f
    for f in "$config"/pci.d/* "$config"/pending.d/*; do
        [ -f "$f" ] && inst_simple "$f" "$f"
    done
    inst_hook pre-udev 00 "$moddir/gallium-vfio-early.sh"
}
