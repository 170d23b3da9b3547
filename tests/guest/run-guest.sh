#!/usr/bin/env bash
# Run one command inside a QEMU (TCG) guest: Debian's real kernel with an emulated VT-d IOMMU and a fixed PCI topology,
# with this machine's userland as its root (read-only 9p + tmpfs overlay, REFERENCE §1). The guest's /sys is a real
# kernel's, so tests may bind devices to vfio-pci there without touching this machine's devices (REFERENCE §7).
#
# Usage: run-guest.sh [--no-iommu] [--vga] [--timeout SECONDS] [--mem MB] [--cwd DIR] [--load MODULE]... [--share DIR]
#                     [--persist-disk FILE [--persist-path PATH]... [--initramfs-stage]] [--udev] [--verbose] -- COMMAND [ARG]...
#   --no-iommu     boot with intel_iommu=off: the firmware still has VT-d (DMAR table), the kernel turned it off, so the
#                  guest has no IOMMU groups and the remedy is on the kernel command line
#   --timeout S    kill the guest after S seconds (default 900) -> exit 124
#   --mem MB       guest RAM (default 2048)
#   --cwd DIR      working directory of COMMAND (default: this repository's root; same path inside the guest)
#   --load MODULE  modprobe MODULE in the guest before COMMAND (default: nothing; vfio-pci is NOT loaded at start)
#   --share DIR    use DIR as the read-write share (visible in the guest as $GALLIUM_GUEST_SHARE) and keep it
#   --persist-disk FILE  a raw ext4 image (created sparse, 256 MiB, when FILE does not exist) that survives the boot: a SATA
#                  disk on the board's AHCI controller 00:1f.2 (no PCI device added), mounted at /persist; the guest gets
#                  GALLIUM_STATE_ROOT=/persist/gallium, and /etc/libvirt/qemu, /var/lib/libvirt, /var/cache/libvirt bound
#                  from it; before COMMAND, init runs /persist/gallium/usr/local/libexec/gallium/gallium-vfio-apply --all
#                  when it exists (the boot unit's job; log in /run/gallium-boot-apply.log)
#   --vga          add a VGA display (QEMU stdvga at 00:10.0, BAR 0 = its 16 MiB framebuffer) and boot with vga=0x317:
#                  the kernel sets a VESA mode and its vesafb firmware framebuffer holds BAR 0 (a line in /proc/iomem).
#                  The extra function on bus 0 shifts the group numbers of the functions after it (look them up)
#   --persist-path PATH  (with --persist-disk) PATH in the guest's root comes from the disk (seeded from the root's own
#                  PATH on first use); with any of them GALLIUM_STATE_ROOT is not set, so the module uses its real paths
#                  (/etc/gallium, /etc/udev/rules.d, ...) and the real boot tools read what it wrote
#   --udev         boot as a systemd host binds drivers: init does not load e1000e; before COMMAND, the early units
#                  sysinit.target wants, then the real systemd-udevd and its coldplug run (boot-sysinit.sh; log in
#                  /run/gallium-sysinit.log). COMMAND starts with udevd running
#   --initramfs-stage  (with --persist-disk) when the disk has /boot/initrd.img-<kernel> (under --persist-path /boot), init
#                  plays it first: its init-top scripts (or dracut pre-udev hooks), its udev and coldplug, then stops its
#                  udevd (initramfs-stage.sh; log in $GALLIUM_GUEST_SHARE/initramfs-stage.log)
#   --verbose      kernel messages on the console, guest timing lines, host wall time on stderr
# Exit code: COMMAND's exit code; 124 on timeout; 125 if the guest died before reporting (or could not cd/start).
# Environment in the guest: PATH (the caller's, plus the sbin dirs), HOME=/root, DOTNET_CLI_HOME=/root,
# DOTNET_CLI_TELEMETRY_OPTOUT=1, DOTNET_NOLOGO=1, GALLIUM_TEST_GUARD=1, the caller's other DOTNET_*/NUGET_* variables,
# TERM (dumb and NO_COLOR=1 unless run on a terminal), GALLIUM_GUEST_SHARE. Kernel command line always has
# `console=ttyS0 panic=-1 gallium.testguest=1` (the write guard's token, REFERENCE §7).
#
# Topology (stable; observed with kernel 6.1.0-56-amd64, QEMU 7.2; group numbers are the guest kernel's):
#   BDF           device                                   IOMMU group
#   0000:00:00.0  q35 host bridge                          0
#   0000:00:02.0  pcie-root-port rp1                       1
#   0000:01:00.0  e1000e, alone behind rp1                 10
#   0000:00:03.0  pcie-root-port rp2                       2
#   0000:02:00.0  pci-testdev membar=1G (no driver)        11
#   0000:00:04.0  pcie-root-port rpa (disable-acs=on)      3  \
#   0000:00:04.1  pcie-root-port rpb (disable-acs=on)      3   | one group of four
#   0000:03:00.0  e1000e behind rpa                        3   |
#   0000:04:00.0  e1000e behind rpb                        3  /
#   0000:00:05.0  e1000e on pcie.0 (multifunction)         4
#   0000:00:05.1  e1000e on pcie.0                         5
#   0000:00:06.0  pcie-root-port rpm                       6
#   0000:05:00.0  e1000e fn 0 (multifunction, "GPU")       12 \ one group of two
#   0000:05:00.1  e1000e fn 1 ("GPU audio")                12 /
#   0000:00:08.0  virtio-9p hostroot (the guest's /)       7  (never unbind)
#   0000:00:09.0  virtio-9p share                          8  (never unbind)
#   0000:00:1f.0/.2/.3  ICH9 LPC / SATA / SMBus            9
# All groups are type DMA-FQ; /sys/class/iommu/dmar0. With --no-iommu: no groups, no dmar0.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$here/work"

iommu=1 timeout_s=900 mem=2048 cwd="$repo" share="" keep_share=0 verbose=0 load=() persist="" persist_paths=() udev=0 initrd_stage=0 vga=0
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --no-iommu) iommu=0 ;;
        --timeout) timeout_s="${2:?}"; shift ;;
        --mem) mem="${2:?}"; shift ;;
        --cwd) cwd="$(cd "${2:?}" 2>/dev/null && pwd)" || { echo "run-guest: no directory $2" >&2; exit 2; }; shift ;;
        --load) load+=("${2:?}"); shift ;;
        --share) share="${2:?}"; keep_share=1; shift ;;
        --persist-disk) persist="${2:?}"; shift ;;
        --vga) vga=1 ;;
        --persist-path) [[ "${2:?}" =~ ^(/[A-Za-z0-9._-]+)+$ ]] || { echo "run-guest: --persist-path takes an absolute path" >&2; exit 2; }
                        persist_paths+=("$2"); shift ;;
        --udev) udev=1 ;;
        --initramfs-stage) initrd_stage=1 ;;
        --verbose) verbose=1 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) echo "run-guest: unknown option $1" >&2; usage ;;
    esac
    shift
done
[ $# -gt 0 ] || { echo "run-guest: no command given" >&2; usage; }
[[ "$timeout_s" =~ ^[0-9]+$ && "$mem" =~ ^[0-9]+$ ]] || { echo "run-guest: --timeout and --mem take integers" >&2; exit 2; }
if [ -z "$persist" ] && { [ ${#persist_paths[@]} -gt 0 ] || [ "$initrd_stage" = 1 ]; }; then
    echo "run-guest: --persist-path and --initramfs-stage need --persist-disk" >&2; exit 2
fi

# Build what is missing, serialised: several runs may start at once.
mkdir -p "$work/runs"
exec 9>"$work/.build.lock"
flock 9
kdir="$(bash "$here/fetch-kernel.sh" | tail -n1)"
[ -s "$work/sercon-off.bin" ] || head -c 8 /dev/zero > "$work/sercon-off.bin"   # etc/sercon-port = 0
initrd="$(bash "$here/build-initramfs.sh" "$kdir" | tail -n1)"
flock -u 9
exec 9>&-
vmlinuz="$(ls "$kdir"/boot/vmlinuz-* | head -n1)"
ver="${vmlinuz##*/vmlinuz-}"

persist_args=()
if [ -n "$persist" ]; then
    if [ ! -e "$persist" ]; then
        truncate -s 256M "$persist"
        PATH="$PATH:/usr/sbin:/sbin" mkfs.ext4 -F -q -L gallium-persist "$persist" \
            || { rm -f "$persist"; echo "run-guest: mkfs.ext4 $persist failed" >&2; exit 2; }
    fi
    persist="$(cd "$(dirname "$persist")" && pwd)/$(basename "$persist")"
    # ide.0 = the first port of the q35 board's ICH9 AHCI (00:1f.2): no new PCI function, so no group number moves.
    # QEMU locks the image: two guests cannot write one disk at once.
    persist_args=(-drive "file=$persist,format=raw,if=none,id=persist,cache=writeback" -device ide-hd,drive=persist,bus=ide.0)
fi

if [ -z "$share" ]; then
    share="$(mktemp -d "$work/runs/run.XXXXXX")"
else
    mkdir -p "$share"; share="$(cd "$share" && pwd)"
fi
cleanup() { [ "$keep_share" = 1 ] || rm -rf "$share"; }
trap cleanup EXIT
rm -f "$share/rc" "$share/rc.tmp"

interactive=0
[ -t 0 ] && [ -t 1 ] && interactive=1
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }   # single-quote for the guest's busybox sh
{
    echo "KMODDIR=$(sq "$kdir/lib/modules/$ver")"
    echo "CWD=$(sq "$cwd")"
    echo "LOAD=$(sq "${load[*]:-}")"
    echo "RAWOUT=$((1 - interactive))"
    echo "INTERACTIVE=$interactive"
    echo "VERBOSE=$verbose"
    echo "PERSIST=$([ -n "$persist" ] && echo 1 || echo 0)"
    echo "PERSIST_PATHS=$(sq "${persist_paths[*]:-}")"
    echo "UDEV=$udev"
    echo "INITRD_STAGE=$initrd_stage"
} > "$share/config"

guest_path="$PATH"
for d in /usr/local/sbin /usr/sbin /sbin; do
    case ":$guest_path:" in *":$d:"*) ;; *) guest_path="$guest_path:$d" ;; esac
done
{
    echo '# Written by run-guest.sh; run by the guest init with bash in the chroot.'
    while IFS='=' read -r -d '' name value; do
        [[ "$name" =~ ^(DOTNET_|NUGET_)[A-Za-z0-9_]*$ ]] && printf 'export %s=%q\n' "$name" "$value"
    done < <(env -0)
    printf 'export PATH=%q\n' "$guest_path"
    echo 'export HOME=/root DOTNET_CLI_HOME=/root DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 GALLIUM_TEST_GUARD=1'
    echo 'export GALLIUM_GUEST_SHARE=/run/gallium-share'
    if [ -n "$persist" ] && [ ${#persist_paths[@]} -eq 0 ]; then
        echo 'export GALLIUM_STATE_ROOT=/persist/gallium GALLIUM_GUEST_PERSIST=/persist'
    elif [ -n "$persist" ]; then
        echo 'export GALLIUM_GUEST_PERSIST=/persist'
    fi
    if [ "$interactive" = 1 ]; then printf 'export TERM=%q\n' "${TERM:-vt100}"; else echo 'export TERM=dumb NO_COLOR=1'; fi
    printf 'cd -- %q || { echo "run-guest: cannot cd to %q in the guest" >&2; exit 125; }\n' "$cwd" "$cwd"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$share/cmd"

append="console=ttyS0 panic=-1 gallium.testguest=1 rdinit=/init"
# The emulated VT-d stays in both cases (so the firmware publishes its DMAR table); --no-iommu turns it off in the kernel.
iommu_args=(-device intel-iommu,intremap=on)
if [ "$iommu" = 1 ]; then
    append="$append intel_iommu=on"
else
    append="$append intel_iommu=off"
fi
[ "$verbose" = 1 ] || append="$append quiet"
vga_args=()
if [ "$vga" = 1 ]; then
    # QEMU hands vga= to the kernel's real-mode setup, which sets the VESA mode through SeaBIOS's VGA BIOS.
    vga_args=(-device VGA,bus=pcie.0,addr=0x10)
    append="$append vga=0x317"
fi

# Fixed addresses everywhere so BDFs and group numbers never shift (REFERENCE §7.2); see the table above.
topology=(
    -device pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2
    -device e1000e,bus=rp1,addr=0x0,romfile=
    -device pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x3
    -device pci-testdev,bus=rp2,addr=0x0,membar=1G
    -device pcie-root-port,id=rpa,chassis=3,slot=3,bus=pcie.0,addr=0x4.0,multifunction=on,disable-acs=on
    -device e1000e,bus=rpa,addr=0x0,romfile=
    -device pcie-root-port,id=rpb,chassis=4,slot=4,bus=pcie.0,addr=0x4.1,disable-acs=on
    -device e1000e,bus=rpb,addr=0x0,romfile=
    -device e1000e,bus=pcie.0,addr=0x5.0,multifunction=on,romfile=
    -device e1000e,bus=pcie.0,addr=0x5.1,romfile=
    -device pcie-root-port,id=rpm,chassis=5,slot=5,bus=pcie.0,addr=0x6
    -device e1000e,bus=rpm,addr=0x0.0,multifunction=on,romfile=
    -device e1000e,bus=rpm,addr=0x0.1,romfile=
    # No option ROMs and no SeaBIOS serial console: the guest's stdout carries only the command's output.
    -fw_cfg name=etc/sercon-port,file="$work/sercon-off.bin"
    # multidevs=remap: without it inode numbers of different host filesystems collide in the guest (REFERENCE §1).
    -fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
    -device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot,bus=pcie.0,addr=0x8
    -fsdev local,id=fsshare,path="$share",security_model=none
    -device virtio-9p-pci,fsdev=fsshare,mount_tag=share,bus=pcie.0,addr=0x9
)

qemu=(qemu-system-x86_64 -accel tcg -machine q35,kernel-irqchip=split -cpu max -smp 2 -m "$mem"
      -nographic -no-reboot -nodefaults -serial stdio
      "${iommu_args[@]}" "${topology[@]}" "${vga_args[@]}" "${persist_args[@]}"
      -kernel "$vmlinuz" -initrd "$initrd" -append "$append")

start=$(date +%s.%N)
set +e
if [ "$interactive" = 1 ]; then
    timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" 2> >(grep -v --line-buffered -e 'has no peer' -e 'fw_cfg item names' >&2)
else
    timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" < /dev/null 2> >(grep -v --line-buffered -e 'has no peer' -e 'fw_cfg item names' >&2)
fi
qrc=$?
set -e
end=$(date +%s.%N)
[ "$verbose" = 1 ] && echo "run-guest: wall time $(awk "BEGIN { printf \"%.1f\", $end - $start }")s (qemu exit $qrc)" >&2

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "run-guest: timed out after ${timeout_s}s" >&2
    exit 124
fi
if [ -s "$share/rc" ]; then
    rc="$(cat "$share/rc")"
    [[ "$rc" =~ ^[0-9]+$ ]] && exit "$rc"
fi
echo "run-guest: the guest stopped without reporting an exit code (qemu exit $qrc)" >&2
exit 125
