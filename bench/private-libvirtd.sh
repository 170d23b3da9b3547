#!/usr/bin/env bash
# A private libvirtd for the bench (REFERENCE §1): its own sockets, and its own domain definitions and state, so the
# thousands of domains a scale run defines never appear in the shared qemu:///system that other test suites list.
#
#   private-libvirtd.sh start OWNER_PID   prints "DIR PID URI" once the daemon answers on URI
#   private-libvirtd.sh stop DIR          stops the daemon started in DIR and removes DIR
#
# The daemon runs in its own mount namespace (unshare --mount) with empty directories over /etc/libvirt/qemu,
# /etc/libvirt/{secrets,nwfilter}, /var/lib/libvirt, /var/log/libvirt and a tmpfs over /run/libvirt, as the QEMU guest's
# init does; unix_sock_dir puts its sockets in DIR/sock, visible outside the namespace. The host's capability cache is
# copied in, so it does not probe QEMU again. Instances whose OWNER_PID has exited (a killed bench) are stopped by the
# next start. Needs root, libvirt-daemon and util-linux (unshare).
set -euo pipefail

base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}

die() { echo "private-libvirtd.sh: $*" >&2; exit 1; }

# The daemon started in DIR, if it still runs: its pid file names it and its command line names DIR.
daemon_pid() {
    local dir=$1 pid
    pid=$(cat "$dir/daemon.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $dir/libvirtd.conf" || return 1
    echo "$pid"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/libvirtd.conf" ] || die "$dir is not a private libvirtd directory."
    if pid=$(daemon_pid "$dir"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf -- "$dir"
}

start() {
    local owner=$1 dir pid uri
    [ "$(id -u)" -eq 0 ] || die "must run as root (a qemu:///system daemon)."
    [ -x /usr/sbin/libvirtd ] || die "/usr/sbin/libvirtd is missing (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)."
    for old in "$base"/gbench-libvirtd.*; do
        [ -f "$old/owner" ] || continue
        kill -0 "$(cat "$old/owner")" 2>/dev/null && continue
        stop "$old"
    done
    dir=$(mktemp -d "$base/gbench-libvirtd.XXXXXX")
    echo "$owner" >"$dir/owner"
    mkdir -p "$dir"/{sock,etc-qemu,secrets,nwfilter,lib,cache,log}
    cp -a /var/cache/libvirt/qemu "$dir/cache/" 2>/dev/null || true
    cat >"$dir/libvirtd.conf" <<CONF
unix_sock_dir = "$dir/sock"
log_outputs = "3:file:$dir/log/libvirtd.log"
CONF
    # unshare execs (no fork): the pid below is the daemon's.
    unshare --mount --propagation private -- /bin/sh -c "
        mount -t tmpfs tmpfs /run/libvirt &&
        mount --bind '$dir/etc-qemu' /etc/libvirt/qemu &&
        mount --bind '$dir/secrets' /etc/libvirt/secrets &&
        mount --bind '$dir/nwfilter' /etc/libvirt/nwfilter &&
        mount --bind '$dir/lib' /var/lib/libvirt &&
        mount --bind '$dir/cache' /var/cache/libvirt &&
        mount --bind '$dir/log' /var/log/libvirt &&
        exec /usr/sbin/libvirtd --config '$dir/libvirtd.conf' --pid-file '$dir/libvirtd.pid'" \
        </dev/null >"$dir/log/stdout" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/daemon.pid"
    uri="qemu:///system?socket=$dir/sock/libvirt-sock"
    for _ in $(seq 1 300); do
        virsh -c "$uri" version >/dev/null 2>&1 && { echo "$dir $pid $uri"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    local log
    log=$(tail -5 "$dir/log/stdout" "$dir/log/libvirtd.log" 2>/dev/null || true)
    stop "$dir"
    die "the private libvirtd did not answer within 60 s: $log"
}

case "${1:-}" in
    start) start "${2:?owner pid}" ;;
    stop) stop "${2:?directory}" ;;
    *) die "usage: private-libvirtd.sh start OWNER_PID | stop DIR" ;;
esac
