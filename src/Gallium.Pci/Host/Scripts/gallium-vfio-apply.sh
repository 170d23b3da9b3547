#!/bin/sh
# gallium-vfio-apply: binds the PCI devices Gallium.PciPassthrough recorded to vfio-pci (driverctl-style persistence).
#   gallium-vfio-apply <domain:bus:dev.fn>   apply one device's record (run by its udev rule on "add")
#   gallium-vfio-apply --all                 apply every record (for a boot unit, or an init without udev)
#   gallium-vfio-apply --wants <bdf>         print vfio-pci (exit 0) when the device is to be on vfio-pci, else nothing
#                                            (exit 1): the udev rule's PROGRAM, run while its rules are applied
#   gallium-vfio-apply --early               only set driver_override of every wanted device (no module load, no
#                                            unbind): the early boot unit and the initramfs stage, before udev's coldplug
# Written by Enable-GalliumPciPassthrough; it is rewritten on the next Enable, so do not edit it.
set -u
# udev RUN and early boot units start with a minimal PATH: add the sbin directories modprobe lives in, after the caller's.
PATH=${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
records=@RECORDS@
sys=/sys
writer=
if [ -n "${GALLIUM_APPLY_SYSFS_ROOT:-}" ]; then   # tests only: a simulated kernel tree
    sys=$GALLIUM_APPLY_SYSFS_ROOT
    writer=${GALLIUM_APPLY_SYSFS_WRITER:-}
fi

log() {
    echo "gallium-vfio-apply: $*" >&2
    if [ -z "${GALLIUM_APPLY_SYSFS_ROOT:-}" ] && command -v logger >/dev/null 2>&1; then
        logger -t gallium-vfio-apply -- "$*" 2>/dev/null || :
    fi
}

# One write(2) to a kernel attribute; echo's trailing newline is stripped by the kernel.
kwrite() {
    if [ -n "$writer" ]; then "$writer" "$1" "$2"; else echo "$2" > "$1"; fi
}

# A line in the kernel log, so dmesg shows where the override landed relative to the drivers' probes.
kmsg() {
    if [ -z "${GALLIUM_APPLY_SYSFS_ROOT:-}" ] && [ -w /dev/kmsg ]; then
        echo "gallium-vfio-apply: $*" > /dev/kmsg 2>/dev/null || :
    fi
}

# Whether the device is to be bound to vfio-pci: it has a record naming vfio-pci.
wants() {
    case $1 in
        ''|*[!0-9a-f:.]*) return 1 ;;
    esac
    [ -f "$records/$1" ] || return 1
    [ "$(cat "$records/$1")" = vfio-pci ]
}

# Before any driver can take the device: the override alone keeps every host driver off it, and vfio-pci binds it
# whenever it loads (REFERENCE §3.3). Nothing is unbound here; a device a driver already holds is left to apply_one.
early_one() {
    bdf=$1
    wants "$bdf" || return 0
    dev=$sys/bus/pci/devices/$bdf
    [ -e "$dev/driver_override" ] || { log "$bdf: no such PCI device with a driver_override"; return 1; }
    [ "$(cat "$dev/driver_override")" = vfio-pci ] && return 0
    kwrite "$dev/driver_override" vfio-pci || { log "$bdf: writing driver_override failed"; return 1; }
    cur=$(driver_of "$dev")
    kmsg "$bdf: driver_override set to vfio-pci (early, driver: ${cur:-none})"
    return 0
}

driver_of() {
    link=$(readlink "$1/driver" 2>/dev/null) || { echo ""; return; }
    echo "${link##*/}"
}

apply_one() {
    bdf=$1
    case $bdf in
        ''|*[!0-9a-f:.]*) log "'$bdf' is not a PCI address"; return 1 ;;
    esac
    [ -f "$records/$bdf" ] || return 0           # no record: not ours
    want=$(cat "$records/$bdf")
    if [ "$want" != vfio-pci ]; then log "$bdf: the record says '$want', expected vfio-pci"; return 1; fi
    dev=$sys/bus/pci/devices/$bdf
    if [ ! -e "$dev" ]; then log "$bdf: no such PCI device"; return 1; fi
    if [ ! -e "$dev/driver_override" ]; then log "$bdf: the kernel has no driver_override for it"; return 1; fi
    if [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then
        # Load first: with the override set and no vfio-pci, the device would be left driverless.
        modprobe -q vfio-pci 2>/dev/null
        if [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then log "$bdf: cannot load vfio-pci"; return 1; fi
    fi
    # Override before unbind: the moment the old driver lets go, only vfio-pci may take the device.
    kwrite "$dev/driver_override" vfio-pci || { log "$bdf: writing driver_override failed"; return 1; }
    cur=$(driver_of "$dev")
    [ "$cur" = vfio-pci ] && return 0
    if [ -n "$cur" ]; then
        kwrite "$sys/bus/pci/drivers/$cur/unbind" "$bdf" || { log "$bdf: unbinding from $cur failed"; return 1; }
    fi
    kwrite "$sys/bus/pci/drivers_probe" "$bdf" || { log "$bdf: drivers_probe failed"; return 1; }
    # drivers_probe succeeds even when probe() fails: the driver link is the truth.
    cur=$(driver_of "$dev")
    if [ "$cur" != vfio-pci ]; then log "$bdf: bound to '${cur:-no driver}' after probing, expected vfio-pci"; return 1; fi
    return 0
}

case ${1:-} in
    --all)
        rc=0
        for rec in "$records"/*; do
            [ -f "$rec" ] || continue
            apply_one "${rec##*/}" || rc=1
        done
        exit $rc ;;
    --early)
        rc=0
        for rec in "$records"/*; do
            [ -f "$rec" ] || continue
            early_one "${rec##*/}" || rc=1
        done
        exit $rc ;;
    --wants)
        if wants "${2:-}"; then echo vfio-pci; exit 0; fi
        exit 1 ;;
    ''|-h|--help)
        echo "usage: gallium-vfio-apply <domain:bus:dev.fn> | --all | --early | --wants <domain:bus:dev.fn>" >&2
        exit 2 ;;
    *)
        apply_one "$1"
        exit $? ;;
esac
