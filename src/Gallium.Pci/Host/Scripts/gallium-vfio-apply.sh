#!/bin/sh
# gallium-vfio-apply: binds the PCI devices Gallium.PciPassthrough recorded to vfio-pci (driverctl-style persistence).
#   gallium-vfio-apply <domain:bus:dev.fn>     apply one device (run by its udev rule on "add")
#   gallium-vfio-apply --all                   apply every recorded device (a boot unit, or an init without udev)
#   gallium-vfio-apply --wants <domain:bus:dev.fn>
#                                              print "vfio-pci" when the device is to be bound to vfio-pci (the
#                                              udev rule's PROGRAM, run while its rules are applied)
#   gallium-vfio-apply --early                 only set driver_override of every wanted device, no module load, no
#                                              unbind: the early boot unit and the initramfs stage (REFERENCE §8.1, §8.2)
# Written by Enable-GalliumPciPassthrough with this host's paths built in; the next Enable rewrites it: do not edit.
#
# It runs as root from udev and boot units, so it takes nothing from its environment: a fixed PATH, absolute programs,
# paths written in when it was installed. It refuses records, directories and kernel attributes that are symbolic links
# or that others could have changed, and never prints what it read from a file it did not expect.
# A device that is part of an unfinished Enable/Disable (an interrupted one: a record in the pending directory) follows
# that change's start state instead of its record, so a boot never applies half a group. REFERENCE §4.4 order: load
# vfio-pci first (§4.6), set the override before unbinding (§4.1), probe, then check the driver link (§3.6).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
records=@RECORDS@
pending=@PENDING@
sys=@SYSFS@

# @SEAM-BEGIN kernel@ (a test copy of this script replaces these functions with ones that talk to a simulated kernel)
# One write(2) of "$2" plus a newline to the attribute $1 (the kernel strips the newline, REFERENCE §3.3).
kwrite() {
    printf '%s\n' "$2" > "$1"
}

load_vfio_pci() {
    for m in /usr/sbin/modprobe /sbin/modprobe /usr/bin/modprobe /bin/modprobe; do
        if [ -x "$m" ]; then "$m" -q vfio-pci 2>/dev/null; return $?; fi
    done
    return 1
}

syslog() {
    if [ -x /usr/bin/logger ]; then /usr/bin/logger -t gallium-vfio-apply -- "$1" 2>/dev/null || :; fi
}
# @SEAM-END kernel@

log() {
    echo "gallium-vfio-apply: $1" >&2
    syslog "$1"
}

# A directory only root (or whoever runs this) can change: not a symbolic link, owned by root or us, not group- or
# world-writable. Absent is fine (nothing recorded).
secure_dir() {
    [ -L "$1" ] && return 1
    [ -e "$1" ] || return 0
    [ -d "$1" ] || return 1
    # shellcheck disable=SC2046 # two numbers, split on purpose
    set -- $(stat -c '%u %a' "$1" 2>/dev/null)
    [ $# -eq 2 ] || return 1
    [ "$1" = 0 ] || [ "$1" = "$(id -u)" ] || return 1
    [ $((0$2 & 022)) -eq 0 ]
}

is_address() {
    case $1 in
        ''|*[!0-9a-f:.]*) return 1 ;;
    esac
    [ ${#1} -le 16 ]
}

# Sets pending_record to yes|no and succeeds when an unfinished change lists device $1.
pending_state() {
    for p in "$pending"/group-*; do
        [ -f "$p" ] && [ ! -L "$p" ] || continue
        # shellcheck disable=SC2034 # driver, override and rule are read for their position only
        while read -r kind addr driver override record rule; do
            [ "$kind" = member ] && [ "$addr" = "$1" ] || continue
            pending_record=no
            [ "$record" = record=yes ] && pending_record=yes
            return 0
        done < "$p"
    done
    return 1
}

# Succeeds when device $1 has a record that says vfio-pci.
recorded() {
    r=$records/$1
    if [ -L "$r" ]; then log "$1: its record is a symbolic link; ignored"; return 1; fi
    [ -f "$r" ] || return 1
    want=
    IFS= read -r want < "$r" || :
    [ "$want" = vfio-pci ] && return 0
    log "$1: its record does not say vfio-pci; ignored"
    return 1
}

# Succeeds when device $1 is to be on vfio-pci: its record says so, unless an unfinished change lists it; then the
# change's start state decides (an interrupted Enable applies none of its new records, an interrupted Disable all of
# the old ones).
wants() {
    pending_record=
    if pending_state "$1"; then
        [ "$pending_record" = yes ]
        return
    fi
    recorded "$1"
}

driver_of() {
    link=$(readlink "$1/driver" 2>/dev/null) || { echo ""; return; }
    echo "${link##*/}"
}

# An attribute we write must be the kernel's own file, not a link planted to redirect the write.
attribute() {
    if [ -L "$1" ] || [ ! -e "$1" ]; then log "$2: $1 is missing or a symbolic link; refusing to write it"; return 1; fi
}

# A line in the real kernel's log, so dmesg shows where the override landed relative to the drivers' probes.
kmsg() {
    if [ "$sys" = /sys ] && [ -w /dev/kmsg ] && [ ! -L /dev/kmsg ]; then
        printf 'gallium-vfio-apply: %s\n' "$1" > /dev/kmsg 2>/dev/null || :
    fi
}

# Before any driver can take the device: the override alone keeps every host driver off it, and vfio-pci binds it
# whenever it loads (REFERENCE §3.3). Nothing is unbound here; a device a driver already holds is left to apply_one.
early_one() {
    bdf=$1
    is_address "$bdf" || return 0
    wants "$bdf" || return 0
    dev=$sys/bus/pci/devices/$bdf
    if [ ! -e "$dev/driver_override" ]; then log "$bdf: no such PCI device with a driver_override"; return 1; fi
    attribute "$dev/driver_override" "$bdf" || return 1
    cur=
    IFS= read -r cur < "$dev/driver_override" || :
    [ "$cur" = vfio-pci ] && return 0
    kwrite "$dev/driver_override" vfio-pci || { log "$bdf: writing driver_override failed"; return 1; }
    drv=$(driver_of "$dev")
    kmsg "$bdf: driver_override set to vfio-pci (early, driver: ${drv:-none})"
    return 0
}

apply_one() {
    bdf=$1
    is_address "$bdf" || { log "the argument is not a PCI address (domain:bus:device.function in lower-case hex)"; return 1; }
    wants "$bdf" || return 0                       # not ours: leave it alone
    dev=$sys/bus/pci/devices/$bdf
    if [ ! -e "$dev" ]; then log "$bdf: no such PCI device"; return 1; fi
    real=$(readlink -f "$dev" 2>/dev/null)
    case $real in
        "$sysreal"/devices/*) ;;
        *) log "$bdf: $dev does not lead into $sys/devices; refusing it"; return 1 ;;
    esac
    if [ ! -e "$dev/driver_override" ]; then log "$bdf: the kernel has no driver_override for it"; return 1; fi
    attribute "$dev/driver_override" "$bdf" || return 1
    if [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then
        # Load first: with the override set and no vfio-pci, the device would be left driverless.
        load_vfio_pci
        if [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then log "$bdf: cannot load vfio-pci"; return 1; fi
    fi
    # Override before unbind: the moment the old driver lets go, only vfio-pci may take the device.
    kwrite "$dev/driver_override" vfio-pci || { log "$bdf: writing driver_override failed"; return 1; }
    cur=$(driver_of "$dev")
    [ "$cur" = vfio-pci ] && return 0
    if [ -n "$cur" ]; then
        attribute "$sys/bus/pci/drivers/$cur/unbind" "$bdf" || return 1
        kwrite "$sys/bus/pci/drivers/$cur/unbind" "$bdf" || { log "$bdf: unbinding from $cur failed"; return 1; }
    fi
    attribute "$sys/bus/pci/drivers_probe" "$bdf" || return 1
    kwrite "$sys/bus/pci/drivers_probe" "$bdf" || { log "$bdf: drivers_probe failed"; return 1; }
    # drivers_probe succeeds even when probe() fails: the driver link is the truth.
    cur=$(driver_of "$dev")
    if [ "$cur" != vfio-pci ]; then log "$bdf: bound to '${cur:-no driver}' after probing, expected vfio-pci"; return 1; fi
    return 0
}

# Every device a record or an unfinished change names, once each (the device's record may be gone mid-Disable).
candidates() {
    seen=" "
    for rec in "$records"/* ; do
        [ -e "$rec" ] || [ -L "$rec" ] || continue
        name=${rec##*/}
        case $seen in *" $name "*) ;; *) seen="$seen$name " ;; esac
    done
    for p in "$pending"/group-*; do
        [ -f "$p" ] && [ ! -L "$p" ] || continue
        # shellcheck disable=SC2034 # only the address is needed
        while read -r kind addr rest; do
            [ "$kind" = member ] || continue
            case $seen in *" $addr "*) ;; *) seen="$seen$addr " ;; esac
        done < "$p"
    done
    echo "$seen"
}

if ! secure_dir "$records" || ! secure_dir "$pending"; then
    log "$records or $pending is a symbolic link, not root's, or writable by others: refusing to act on it"
    exit 1
fi
sysreal=$(readlink -f "$sys" 2>/dev/null) || sysreal=$sys

case ${1:-} in
    --all)
        rc=0
        for bdf in $(candidates); do
            apply_one "$bdf" || rc=1
        done
        exit $rc ;;
    --early)
        rc=0
        for bdf in $(candidates); do
            early_one "$bdf" || rc=1
        done
        exit $rc ;;
    --wants)
        is_address "${2:-}" || { log "the argument is not a PCI address (domain:bus:device.function in lower-case hex)"; exit 2; }
        if wants "$2"; then echo vfio-pci; fi
        exit 0 ;;
    ''|-h|--help)
        echo "usage: gallium-vfio-apply <domain:bus:dev.fn> | --all | --early | --wants <domain:bus:dev.fn>" >&2
        exit 2 ;;
    *)
        apply_one "$1"
        exit $? ;;
esac
