#!/usr/bin/env bash
# Fetch Debian's dracut packages (dracut, dracut-core) for boot-binding-test.sh, which unpacks them in a throwaway
# root (host-chroot.sh) to build a real dracut image: they are never installed (dracut conflicts with initramfs-tools).
# Idempotent. Last stdout line = absolute directory holding the two .deb files.
# Usage: bash tests/guest/fetch-dracut.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$here/work/debs/dracut"
mkdir -p "$dir"
have() { ls "$dir"/dracut_*.deb "$dir"/dracut-core_*.deb >/dev/null 2>&1; }
if ! have; then
    echo "fetch-dracut: downloading dracut dracut-core" >&2
    ( cd "$dir" && apt-get download dracut dracut-core >&2 ) || {
        echo "fetch-dracut: apt-get download failed; retrying after apt-get update" >&2
        apt-get update -qq >&2
        ( cd "$dir" && apt-get download dracut dracut-core >&2 )
    }
    have || { echo "fetch-dracut: no dracut packages in $dir" >&2; exit 1; }
fi
echo "$dir"
