#!/usr/bin/env bash
# Boot proof for the large-BAR (>32 GB VRAM) fix (REFERENCE §6): a real libvirtd boots OVMF q35 TCG domains whose
# stand-in GPU is `pci-testdev,membar=<size>` behind a pcie-root-port (no RAM used), once as defined and once after
# Gallium.Pci.Mmio planned and applied its fix, and reads the guest kernel's view of BAR2.
# Expectations: without the fix the large BAR is unassigned; with it the BAR is assigned at the address the model
# predicts; RemoveFix on libvirt's own dump of the fixed domain gives back libvirt's dump of the original.
# Needs root, the CI packages (libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ovmf
# busybox-static cpio kmod) and the .NET SDK. Exit 0 = every expectation held.
# Env: GALLIUM_KERNEL (a vmlinuz) or GALLIUM_KERNEL_DIR (dir with boot/vmlinuz-*) to skip the kernel download;
#      GALLIUM_MMIO_CASES="A B ..." to run a subset; GALLIUM_BOOT_TIMEOUT (s, default 300).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$here/work"
URI='qemu:///system'
BOOT_TIMEOUT=${GALLIUM_BOOT_TIMEOUT:-300}
mkdir -p "$work/logs" "$work/xml" "$work/nvram"

log() { echo "boot-proof: $*" >&2; }
die() { log "$*"; exit 2; }
virsh_() { virsh -q -c "$URI" "$@"; }
[ "$(id -u)" -eq 0 ] || die "must run as root (qemu:///system)."

# ---- libvirtd (REFERENCE §1) ----------------------------------------------------------------------------------
start_libvirtd() {
    virsh -c "$URI" version >/dev/null 2>&1 && return 0
    if [ -x "$repo/tests/libvirt/start-libvirtd.sh" ]; then
        timeout 120 "$repo/tests/libvirt/start-libvirtd.sh" >&2 && return 0
        log "tests/libvirt/start-libvirtd.sh failed; starting libvirtd directly"
    fi
    getent group kvm >/dev/null || groupadd -r kvm
    # Debian's libvirt 9.0 resolves its built-in default group 'libvirt-qemu' before reading qemu.conf.
    getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
    getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
    mkdir -p /var/log/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt
    local marker='# gallium-tests: run QEMU as root without cgroups/namespaces (REFERENCE §1)'
    if ! grep -qxF "$marker" /etc/libvirt/qemu.conf 2>/dev/null; then
        printf '%s\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\nnamespaces = [ ]\ncgroup_controllers = [ ]\n' \
            "$marker" >>/etc/libvirt/qemu.conf
    fi
    [ -f /run/virtlogd.pid ] && kill -0 "$(cat /run/virtlogd.pid)" 2>/dev/null || /usr/sbin/virtlogd -d
    /usr/sbin/libvirtd --daemon
    for _ in $(seq 1 150); do virsh -c "$URI" version >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "libvirtd does not answer on $URI (see /var/log/libvirt/libvirtd.log)"
}

# ---- kernel: Debian's, the one linux-image-amd64 depends on --------------------------------------------------
find_kernel() {
    if [ -n "${GALLIUM_KERNEL:-}" ]; then echo "$GALLIUM_KERNEL"; return; fi
    local kdir="${GALLIUM_KERNEL_DIR:-}"
    if [ -z "$kdir" ] && [ -x "$repo/tests/guest/fetch-kernel.sh" ]; then
        kdir="$("$repo/tests/guest/fetch-kernel.sh" | tail -n1)"
    fi
    if [ -z "$kdir" ]; then
        kdir="$work/kernel"
        if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
            local pkg
            pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
            if [ -z "$pkg" ]; then apt-get update -qq >&2; pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"; fi
            [ -n "$pkg" ] || die "cannot resolve the kernel package behind linux-image-amd64"
            mkdir -p "$work/debs" "$kdir"
            ls "$work/debs/${pkg}_"*.deb >/dev/null 2>&1 || ( cd "$work/debs" && apt-get download "$pkg" >&2 )
            # Only the kernel image is needed: the guest loads no modules.
            dpkg-deb --fsys-tarfile "$work/debs/${pkg}_"*.deb | tar -x -C "$kdir" --wildcards './boot/vmlinuz-*'
        fi
    fi
    ls "$kdir"/boot/vmlinuz-* | head -n1
}

# ---- initramfs: busybox that prints the guest's view of the BARs and powers off ------------------------------
build_initrd() {
    local root="$work/initrd"
    rm -rf "$root"; mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
    cp "$(command -v busybox)" "$root/bin/busybox"
    file -L "$root/bin/busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$root/bin/busybox" 2>&1 | grep -q 'not a dynamic' \
        || die "busybox is not static: apt-get install busybox-static"
    cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "GALLIUM-MMIO-BEGIN"
grep -m1 'address sizes' /proc/cpuinfo
dmesg | grep -E "BAR [0-9]|root bus resource|no space|can't claim|can't assign|failed to assign|bridge window"
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1b36 ] && [ "$(cat $d/device)" = 0x0005 ]; then
    echo "TESTDEV $(basename $d) BAR2 $(sed -n 3p $d/resource)"
  fi
done
echo "GALLIUM-MMIO-END"
poweroff -f
INIT
    chmod +x "$root/init"
    ( cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 ) >"$work/initrd.gz"
}

# ---- one domain ---------------------------------------------------------------------------------------------
# domain_xml NAME CPU-XML MEMBAR
domain_xml() {
    cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$1</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>$work/nvram/$1_VARS.fd</nvram>
    <kernel>$KERNEL</kernel>
    <initrd>$work/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 rdinit=/init quiet</cmdline>
  </os>
  <features><acpi/></features>
  $2
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <serial type='file'><source path='$work/logs/$1.serial'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='pcie-root-port,id=gbar,chassis=90,bus=pcie.0,addr=0x10'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='pci-testdev,bus=gbar,membar=$3'/>
  </qemu:commandline>
</domain>
XML
}

DEFINED=()
cleanup() {
    for d in "${DEFINED[@]:-}"; do
        [ -n "$d" ] || continue
        virsh_ destroy "$d" >/dev/null 2>&1 || true
        virsh_ undefine --nvram "$d" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# boot NAME TAG (uses $id of the calling case) -> sets BOOT_RESULT (address of BAR2 or "unassigned"/"timeout"/"no-output") and BOOT_SECONDS
boot() {
    local name=$1 tag=$2 serial="$work/logs/$1.serial" t0 t1 state
    rm -f "$serial"
    t0=$(date +%s.%N)
    virsh_ start "$name" >/dev/null
    local deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while :; do
        state="$(virsh_ domstate "$name" 2>/dev/null || echo gone)"
        [ "$state" = "shut off" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then virsh_ destroy "$name" >/dev/null 2>&1 || true; state=timeout; break; fi
        sleep 0.5
    done
    t1=$(date +%s.%N)
    BOOT_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    mv -f "$serial" "$work/logs/$name-$tag.serial" 2>/dev/null || true
    serial="$work/logs/$name-$tag.serial"
    local line
    line="$(tr -d '\r' <"$serial" 2>/dev/null | grep '^TESTDEV ' | head -n1 || true)"
    if [ "$state" = timeout ]; then BOOT_RESULT=timeout
    elif [ -z "$line" ]; then BOOT_RESULT=no-output
    else
        local start; start="$(awk '{print $4}' <<<"$line")"
        if [ $((start)) -eq 0 ]; then BOOT_RESULT=unassigned; else BOOT_RESULT="$(printf '0x%x' $((start)))"; fi
    fi
    # The guest's own words, for the record.
    tr -d '\r' <"$serial" 2>/dev/null | sed -n '/GALLIUM-MMIO-BEGIN/,/GALLIUM-MMIO-END/p' \
        | grep -E "address sizes|root bus resource \[mem 0x[0-9a-f]{9,}|: BAR 2 .*64bit pref|no space|can't claim|failed to assign|TESTDEV" \
        | grep -vE 'BAR [0-5] \[(io|mem 0x[0-9a-f]{1,8}-)' | sed 's/^\[ *[0-9.]*\] //' | awk '!seen[$0]++' \
        | sed "s/^/    [$id $tag] /" >&2 || true
}

FAILURES=0
PASSES=0
ROWS=()
# run_case ID CPU-XML MEMBAR EXPECT-WITHOUT(fail|ok) WHAT
run_case() {
    local id=$1 cpu=$2 bar=$3 expect_without=$4 what=$5
    local name="gallium-mmio-$id-$$" x0="$work/xml/$id.0.xml" x1="$work/xml/$id.1.xml"
    log "case $id: $what"
    domain_xml "$name" "$cpu" "$bar" >"$work/xml/$id.in.xml"
    virsh_ define "$work/xml/$id.in.xml" >/dev/null
    DEFINED+=("$name")
    virsh_ dumpxml --inactive "$name" >"$x0"

    # Plan and apply with the real core, on libvirt's own dump of the definition.
    local out rc=0
    out="$(dotnet "$MMIOFIX" plan --xml "$x0" --out "$x1" --bar "$bar")" || rc=$?
    [ $rc -eq 0 ] || { log "case $id: MmioFix plan exited $rc"; echo "$out" >&2; FAILURES=$((FAILURES + 1)); return; }
    local outcome changes expect reason
    outcome="$(sed -n 's/^OUTCOME=//p' <<<"$out")"
    changes="$(sed -n 's/^CHANGES=//p' <<<"$out")"
    expect="$(sed -n 's/^EXPECT_BAR=//p' <<<"$out")"
    reason="$(sed -n 's/^REASON=//p' <<<"$out")"
    log "  plan: $reason"

    local without="-" with="-" t_without="-" t_with="-" verdict=PASS
    if [ "$outcome" = FixNeeded ]; then
        boot "$name" without; without=$BOOT_RESULT; t_without=$BOOT_SECONDS
        [ "$expect_without" = fail ] && [ "$without" != unassigned ] && verdict="FAIL(without: $without, expected unassigned)"
        virsh_ define "$x1" >/dev/null
        boot "$name" with; with=$BOOT_RESULT; t_with=$BOOT_SECONDS
        [ "$with" = "$expect" ] || verdict="FAIL(with: $with, expected $expect)"
        # Round trip through libvirt: RemoveFix(dump of fixed) defines back to the dump of the original.
        local x2="$work/xml/$id.2.xml" x3="$work/xml/$id.3.xml" x4="$work/xml/$id.4.xml"
        virsh_ dumpxml --inactive "$name" >"$x2"
        grep -q 'gallium:mmio' "$x2" || verdict="FAIL(libvirt dropped the gallium:mmio marker)"
        dotnet "$MMIOFIX" remove --xml "$x2" --out "$x3"
        virsh_ define "$x3" >/dev/null
        virsh_ dumpxml --inactive "$name" >"$x4"
        diff -q "$x0" "$x4" >/dev/null || { verdict="FAIL(RemoveFix round trip differs: diff $x0 $x4)"; diff "$x0" "$x4" >&2 || true; }
    else
        [ "$expect_without" = ok ] || verdict="FAIL(planned $outcome, expected a fix)"
        cmp -s "$x0" "$x1" || verdict="FAIL(ApplyFix changed a definition that needs nothing)"
        boot "$name" as-is; without=$BOOT_RESULT; t_without=$BOOT_SECONDS
        [ "$without" = "$expect" ] || verdict="FAIL(as-is: $without, expected $expect)"
        changes="(none needed)"
    fi
    if [ "${verdict%%(*}" = PASS ]; then PASSES=$((PASSES + 1)); else FAILURES=$((FAILURES + 1)); fi
    ROWS+=("$(printf '%-2s %-30s %-5s %-40s %-11s %6s  %-15s %6s  %-15s %s' \
        "$id" "$what" "$bar" "$changes" "$without" "$t_without" "$with" "$t_with" "$expect" "$verdict")")
    virsh_ undefine --nvram "$name" >/dev/null 2>&1 || true
}

T_START=$(date +%s)
start_libvirtd
KERNEL="$(find_kernel)"
[ -f "$KERNEL" ] || die "no kernel image found"
build_initrd
log "building the core and tests/mmio/MmioFix"
build_log="$(dotnet build "$here/MmioFix/MmioFix.csproj" -c Release -nologo -v q 2>&1)" || { echo "$build_log" >&2; die "build failed"; }
MMIOFIX="$here/MmioFix/bin/Release/net8.0/MmioFix.dll"
log "kernel $KERNEL; host: $(grep -m1 'address sizes' /proc/cpuinfo | sed 's/.*: //'), $(grep -m1 vendor_id /proc/cpuinfo | sed 's/.*: //')"

INTEL40="<cpu mode='custom' match='exact'><model fallback='forbid' vendor_id='GenuineIntel'>qemu64</model></cpu>"
INTEL40_1G="<cpu mode='custom' match='exact'><model fallback='forbid' vendor_id='GenuineIntel'>qemu64</model><feature policy='require' name='pdpe1gb'/></cpu>"
CASES="${GALLIUM_MMIO_CASES:-A B C D E}"
for c in $CASES; do
    case $c in
        A) run_case A "<cpu mode='maximum'/>" 256G fail "TCG max (AMD 40b) 256G BAR" ;;
        B) run_case B "$INTEL40" 64G fail "qemu64 GenuineIntel 40b 64G" ;;
        C) run_case C "$INTEL40_1G" 64G fail "same + pdpe1gb, 64G" ;;
        D) run_case D "$INTEL40" 256G fail "qemu64 GenuineIntel 40b 256G" ;;
        E) run_case E "<cpu mode='maximum'/>" 64G ok "TCG max (AMD 40b) 64G BAR" ;;
        *) die "unknown case $c" ;;
    esac
done

echo
printf '%-2s %-30s %-5s %-40s %-11s %6s  %-15s %6s  %-15s %s\n' \
    id case BAR "fix (planned by Gallium.Pci.Mmio)" without secs "with fix" secs "expected BAR" verdict
for r in "${ROWS[@]}"; do echo "$r"; done
echo "total $(( $(date +%s) - T_START )) s; serial logs in $work/logs"
# One case = one test in build.ps1's totals.
echo "GALLIUM-PESTER-RESULT {\"Passed\":$PASSES,\"Failed\":$FAILURES,\"Skipped\":0}"
[ "$FAILURES" -eq 0 ] || { echo "boot-proof: $FAILURES case(s) failed"; exit 1; }
echo "boot-proof: all expectations held"
