# shellcheck shell=bash
# Sourced by the in-guest boot scripts: run one command (a pwsh step script) under a watchdog, so a hang shows WHERE it
# hung and ends as one failed check long before run-guest.sh's whole-guest timeout (which would also cost the boots after
# it). On expiry it prints, as "watchdog:" lines, the step the script said it was in (GALLIUM_STEP_FILE, written by the
# step scripts' Check/Step), every process with its state and kernel wait channel, each thread of the hung processes
# with its wait channel and kernel stack, and whether libvirtd still answers; then it kills the command.
#   watched SECONDS CMD...     exit code of CMD, or 124 after the watchdog fired (stdin is /dev/null)
export GALLIUM_STEP_FILE=${GALLIUM_STEP_FILE:-/run/gallium-current-step}

watchdog_report() {   # watchdog_report PID
    local pid=$1 p t
    echo "watchdog: step in progress: $(cat "$GALLIUM_STEP_FILE" 2>/dev/null || echo '(none recorded: before the first check)')"
    ps -eo pid,ppid,stat,wchan:28,etime,args 2>/dev/null | sed 's/^/watchdog: ps: /'
    for p in $pid $(pgrep -P "$pid" 2>/dev/null) $(pgrep -f 'pwsh|libvirtd|virsh' 2>/dev/null); do
        [ -d "/proc/$p" ] || continue
        for t in /proc/"$p"/task/*; do
            echo "watchdog: $p/${t##*/} $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) state=$(awk '{print $3}' "$t/stat" 2>/dev/null)"
            sed "s|^|watchdog:   |" "$t/stack" 2>/dev/null | head -n 12
        done
    done
    echo "watchdog: libvirtd answers: $(timeout 10 virsh -c qemu:///system version >/dev/null 2>&1 && echo yes || echo no)"
}

watched() {
    local seconds=$1 pid wd rc
    shift
    rm -f "$GALLIUM_STEP_FILE"
    "$@" </dev/null &
    pid=$!
    ( sleep "$seconds"; if kill -0 "$pid" 2>/dev/null; then
          echo "FAIL [watchdog] $* still running after ${seconds}s: killed"
          watchdog_report "$pid"
          pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
      fi ) &
    wd=$!
    wait "$pid"
    rc=$?
    pkill -P "$wd" sleep 2>/dev/null; kill "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null
    [ "$rc" -eq 137 ] && rc=124
    return "$rc"
}
