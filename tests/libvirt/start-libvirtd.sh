#!/usr/bin/env bash
# Start a real libvirtd (system instance, qemu:///system) for the libvirt tests, as REFERENCE §1 proved on Debian 12
# without systemd. Idempotent: a second run finds the daemons answering and changes nothing.
# Needs root and the packages CI installs: libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0 qemu-system-x86.
set -euo pipefail

URI='qemu:///system'
QEMU_CONF=/etc/libvirt/qemu.conf
MARKER='# gallium-tests: run QEMU as root without cgroups/namespaces (REFERENCE §1)'
WAIT_SECONDS=${GALLIUM_LIBVIRTD_WAIT:-30}

die() { echo "start-libvirtd.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (libvirtd system instance)."
for bin in /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/virsh; do
    [ -x "$bin" ] || die "$bin is missing: apt-get install -y --no-install-recommends libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0 qemu-system-x86"
done

answers() { virsh -c "$URI" version >/dev/null 2>&1; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Serialise concurrent callers (several test runs may start at once); the daemons must not inherit the lock fd.
mkdir -p /run/lock
exec 9>/run/lock/gallium-start-libvirtd.lock
flock 9

# Debian's libvirtd resolves its built-in default user AND group 'libvirt-qemu' before reading qemu.conf: without
# either it dies with "Failed to parse user/group 'libvirt-qemu'" (REFERENCE §1 names the user; the group is needed too).
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /etc/libvirt

if ! grep -qxF "$MARKER" "$QEMU_CONF" 2>/dev/null; then
    cat >>"$QEMU_CONF" <<CONF
$MARKER
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
namespaces = [ ]
cgroup_controllers = [ ]
CONF
fi

# virtlogd is needed to start a domain (REFERENCE §1).
running /run/virtlogd.pid || /usr/sbin/virtlogd -d 9>&-

if ! answers; then
    running /run/libvirtd.pid || /usr/sbin/libvirtd --daemon 9>&-
    for _ in $(seq 1 $((WAIT_SECONDS * 5))); do
        answers && break
        sleep 0.2
    done
fi

answers || die "libvirtd did not answer on $URI within ${WAIT_SECONDS}s; see /var/log/libvirt and 'virsh -c $URI version'."
echo "libvirtd answers on $URI ($(virsh -c "$URI" version 2>/dev/null | sed -n 's/^Running hypervisor: *//p'))"
