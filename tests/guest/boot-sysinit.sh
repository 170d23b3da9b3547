#!/bin/bash
# The part of systemd's sysinit.target that decides which driver a PCI device gets, played in the test guest's root
# (init.sh --udev runs it in the chroot before the command) with the host's real unit files and the real systemd-udevd:
#   1. every unit sysinit.target wants (a sysinit.target.d/*.conf Wants= drop-in or a sysinit.target.wants/ entry) that
#      is DefaultDependencies=no and ordered Before=systemd-udev-trigger.service: its ExecStart=, in that order
#   2. systemd-udevd.service's daemon (its ExecStart=, daemonised)
#   3. systemd-udev-trigger.service's ExecStart= (the coldplug: "add" for every device), then `udevadm settle`
#      (systemd-udev-settle.service's job)
# systemd itself is not PID 1 here; the ordering facts this stands for are in tests/guest/README.md ("Boot-time binding").
# Output: one line per step (init.sh writes it to /run/gallium-sysinit.log).
set -u
# The guest's root is a chroot (init.sh): udevadm refuses trigger/settle there ("Running in chroot, ignoring request")
# unless told that this chroot is the system.
export SYSTEMD_IGNORE_CHROOT=1
say() { echo "[sysinit $(cut -d' ' -f1 /proc/uptime)s] $*"; }
unit_file() {   # the unit's fragment, /etc first (as systemd's search path)
    local d
    for d in /etc/systemd/system /run/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
        [ -f "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}
key() { sed -n "s/^$2=//p" "$1"; }   # key FILE NAME: every value of NAME= in FILE

wanted=()
for f in /etc/systemd/system/sysinit.target.d/*.conf /run/systemd/system/sysinit.target.d/*.conf; do
    [ -f "$f" ] || continue
    for u in $(key "$f" Wants); do wanted+=("$u"); done
done
for l in /etc/systemd/system/sysinit.target.wants/*; do
    [ -e "$l" ] && wanted+=("${l##*/}")
done
for u in "${wanted[@]}"; do
    f=$(unit_file "$u") || { say "$u: no unit file"; continue; }
    if [ "$(key "$f" DefaultDependencies)" != no ] || ! [[ " $(key "$f" Before | tr '\n' ' ') " == *" systemd-udev-trigger.service "* ]]; then
        say "$u: not ordered before udev's coldplug ($f), left for later"
        continue
    fi
    skip=""
    for c in $(key "$f" ConditionDirectoryNotEmpty); do
        [ -n "$(ls -A "$c" 2>/dev/null)" ] || skip="ConditionDirectoryNotEmpty=$c not met"
    done
    for c in $(key "$f" ConditionPathIsReadWrite); do
        [ -w "$c" ] || skip="ConditionPathIsReadWrite=$c not met"
    done
    if [ -n "$skip" ]; then say "$u: skipped, $skip"; continue; fi
    # A here-string, not <(...): the chroot's devtmpfs has no /dev/fd (systemd would create it).
    while read -r cmd; do
        [ -n "$cmd" ] || continue
        say "$u: ExecStart=$cmd"
        # shellcheck disable=SC2086 # a unit's command line is split on spaces, as systemd does for these
        ${cmd#-} 2>&1 | sed 's/^/    /'
        say "$u: exited ${PIPESTATUS[0]}"
    done <<< "$(key "$f" ExecStart)"
done

udevd=$(key "$(unit_file systemd-udevd.service)" ExecStart | head -n1)
say "systemd-udevd.service: ${udevd} --daemon"
${udevd} --daemon || { say "systemd-udevd did not start"; exit 1; }
trigger=$(key "$(unit_file systemd-udev-trigger.service)" ExecStart | head -n1)
say "systemd-udev-trigger.service: ExecStart=${trigger}"
${trigger#-} || say "the trigger exited $?"
udevadm settle --timeout=300 || say "udevadm settle exited $?"
say "coldplug settled; e1000e $( [ -d /sys/module/e1000e ] && echo loaded || echo 'not loaded')"
