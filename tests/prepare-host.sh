#!/usr/bin/env bash
# Installs and starts what the test suites need on a fresh Debian 12 machine (idempotent; needs root):
# QEMU + OVMF + the Debian kernel tools for the real-kernel guest, pciutils + pci.ids for the inventory checks,
# udev + initramfs-tools + driverctl for the boot-time binding proof (the guest's root is this machine's userland, so
# its systemd-udevd, update-initramfs and driverctl are these; driverctl is also a peer of the bench), and a running libvirtd (REFERENCE §1). build.ps1 -Task Test and .ci/run both call it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0 qemu-system-x86 ovmf pciutils pci.ids
          busybox-static cpio kmod openssh-server e2fsprogs udev initramfs-tools driverctl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "prepare-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
bash "$here/libvirt/start-libvirtd.sh"        # a real libvirtd on qemu:///system (REFERENCE §1)
bash "$here/remoting/setup-ssh.sh"            # sshd on 127.0.0.1:2222 with the pwsh subsystem, for the remoting suite
echo "prepare-host: ready"
