#!/usr/bin/env bash
# Starts a dedicated sshd on localhost for the Remoting Pester suite (tests/pester/Remoting.Tests.ps1): PowerShell SSH
# remoting (Invoke-Command -HostName localhost) and libvirt's qemu+ssh:// transport, both as root with a key, nothing
# prompting. Idempotent; needs root; works without systemd (sshd is started directly with its own config).
#
# Everything lives in $GALLIUM_SSH_DIR (default /run/gallium-sshd): sshd_config, host key, the client key id_ed25519,
# authorized_keys, known_hosts, the pwsh subsystem wrapper, sshd.pid, sshd.log, and 'port' (default 2222). The system's
# sshd and /etc/ssh are left alone. The one change outside that directory: root's ~/.ssh/known_hosts gets this sshd's
# host key for [localhost]:<port>, because libvirt's ssh transport has no known_hosts parameter (libvirt 9.0 runs
# plain 'ssh -p <port> -l root -i <keyfile> -T -e none -o BatchMode=yes').
#
#   ssh -p 2222 -i /run/gallium-sshd/id_ed25519 root@localhost
#   virsh -c 'qemu+ssh://root@localhost:2222/system?keyfile=/run/gallium-sshd/id_ed25519&no_tty=1' list --all
#   Invoke-Command -HostName localhost -Port 2222 -UserName root -KeyFilePath /run/gallium-sshd/id_ed25519 { $PID }
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${GALLIUM_SSH_DIR:-/run/gallium-sshd}
port=${GALLIUM_SSH_PORT:-2222}
sshd=/usr/sbin/sshd

die() { echo "setup-ssh.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it starts an sshd that logs in as root)."

mkdir -p /run/lock
exec 9>/run/lock/gallium-setup-ssh.lock
flock 9

# --- packages: openssh-server; libvirt's ssh transport runs virt-ssh-helper (package libvirt-daemon, libvirt >= 8.5)
#     on the remote side and falls back to nc, so netcat-openbsd only when the helper is missing.
missing=()
dpkg -s openssh-server >/dev/null 2>&1 || missing+=(openssh-server)
command -v virt-ssh-helper >/dev/null 2>&1 || command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-ssh.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -x "$sshd" ] || die "$sshd is missing after installing openssh-server."

# --- the pinned pwsh (the repo's dotnet local tool, .config/dotnet-tools.json) that the powershell subsystem runs.
dotnet=$(command -v dotnet) || die "dotnet is not on PATH."
dotnet=$(readlink -f "$dotnet")
pwsh_version=$(sed -n '/"powershell"/,/}/s/.*"version": *"\([^"]*\)".*/\1/p' "$repo/.config/dotnet-tools.json" | head -n 1)
[ -n "$pwsh_version" ] || die "no powershell tool version in $repo/.config/dotnet-tools.json."
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
pwsh_dll=$(ls -d "$packages"/powershell/"$pwsh_version"/tools/net*/any/unix/pwsh.dll 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pwsh_dll" ]; then
    (cd "$repo" && dotnet tool restore >/dev/null)
    pwsh_dll=$(ls -d "$packages"/powershell/"$pwsh_version"/tools/net*/any/unix/pwsh.dll 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$pwsh_dll" ] || die "pwsh $pwsh_version not found under $packages/powershell (run 'dotnet tool restore' in $repo)."

running() { [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }

# Before anything changes: the port must be ours already or free (bash's /dev/tcp: iproute2 is not on every image).
if ! { running && [ "$(cat "$dir/port" 2>/dev/null)" = "$port" ]; }; then
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is taken by another program; set GALLIUM_SSH_PORT to a free port."
    fi
fi

install -d -m 0700 "$dir"
install -d -m 0755 /run/sshd   # sshd's privilege separation directory; /run is a fresh tmpfs after a reboot

[ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C gallium-test-host -f "$dir/ssh_host_ed25519_key"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gallium-test-root -f "$dir/id_ed25519"
install -m 0600 "$dir/id_ed25519.pub" "$dir/authorized_keys"

# Host keys are known up front (no trust-on-first-use prompt): the same entry ssh-keyscan would print, for every name
# the tests may dial.
{
    printf '[localhost]:%s,[127.0.0.1]:%s,[::1]:%s ' "$port" "$port" "$port"
    cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub"
} >"$dir/known_hosts.new"
mv "$dir/known_hosts.new" "$dir/known_hosts"
# ...and the same entry in root's own known_hosts (for libvirt's ssh transport), replacing a stale one from an earlier
# host key (the key lives on /run, so it is new after every reboot).
root_ssh="$(getent passwd root | cut -d: -f6)/.ssh"
install -d -m 0700 "$root_ssh"
touch "$root_ssh/known_hosts"
for name in "[localhost]:$port" "[127.0.0.1]:$port" "[::1]:$port"; do
    ssh-keygen -q -R "$name" -f "$root_ssh/known_hosts" >/dev/null 2>&1 || true
done
rm -f "$root_ssh/known_hosts.old"
cat "$dir/known_hosts" >>"$root_ssh/known_hosts"
echo "$port" >"$dir/port"

# The subsystem sshd runs for Invoke-Command -HostName: the repo's pinned pwsh, with the test guard on, so that no
# remote session of the test suites can write to this machine's real /sys (LinuxSysfs WriteGuard).
cat >"$dir/pwsh-subsystem.sh.new" <<WRAPPER
#!/bin/sh
# Generated by tests/remoting/setup-ssh.sh: PowerShell SSH remoting server (pwsh $pwsh_version, the repo's local tool).
export GALLIUM_TEST_GUARD=1 DOTNET_ROOT='$(dirname "$dotnet")' DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
exec '$dotnet' '$pwsh_dll' "\$@"
WRAPPER
chmod 0755 "$dir/pwsh-subsystem.sh.new"
mv "$dir/pwsh-subsystem.sh.new" "$dir/pwsh-subsystem.sh"

# Without PAM (pam_loginuid fails in containers) sshd refuses accounts whose password field starts with '!'.
use_pam=no
case "$(getent shadow root | cut -d: -f2)" in '!'*) use_pam=yes ;; esac

cat >"$dir/sshd_config.new" <<CONFIG
# Generated by tests/remoting/setup-ssh.sh: the Gallium test sshd (localhost only, root by key only).
Port $port
ListenAddress 127.0.0.1
ListenAddress ::1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM $use_pam
StrictModes yes
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 30:30:100
LogLevel VERBOSE
Subsystem powershell $dir/pwsh-subsystem.sh -sshs -NoLogo -NoProfile
CONFIG
"$sshd" -t -f "$dir/sshd_config.new" || die "the generated $dir/sshd_config.new is invalid (see above)."

if running && cmp -s "$dir/sshd_config.new" "$dir/sshd_config"; then
    rm "$dir/sshd_config.new"
else
    mv "$dir/sshd_config.new" "$dir/sshd_config"
    if running; then
        # A changed config (another port, another pwsh): stop our own sshd, by its pid file, and start it afresh.
        pid=$(cat "$dir/sshd.pid")
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" 9>&-
fi

ssh_opts=(-p "$port" -i "$dir/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile="$dir/known_hosts"
          -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5)
ok=
for _ in $(seq 1 50); do
    if ssh "${ssh_opts[@]}" root@localhost true 2>/dev/null; then ok=1; break; fi
    sleep 0.2
done
[ -n "$ok" ] || { ssh "${ssh_opts[@]}" root@localhost true || true; tail -n 20 "$dir/sshd.log" >&2 || true
                  die "cannot log in as root@localhost:$port with $dir/id_ed25519 (sshd log: $dir/sshd.log)."; }

echo "setup-ssh.sh: sshd on localhost:$port (root, key $dir/id_ed25519, known_hosts $dir/known_hosts), subsystem powershell -> pwsh $pwsh_version"
