# shellcheck shell=bash
# The per-step loop of the multi-boot proofs (reboot-test.sh, boot-binding-test.sh), sourced by them: each step (a guest
# boot, or a host step between boots) runs, its output is printed, and its "PASS ..."/"FAIL ..." lines are counted; a
# step that exits non-zero without a FAIL line counts as one failure. seq_end prints the summary and last the marker
# line build.ps1 counts:  GALLIUM-PESTER-RESULT {"Passed":N,"Failed":N,"Skipped":0}
#   seq_init NAME            start the count (NAME prefixes the "=== NAME: ... ===" lines)
#   seq_step LABEL CMD...    run one step
#   seq_end [NOTE]           summary; returns 1 when any check failed
seq_init() { seq_name=$1 seq_passed=0 seq_failed=0 seq_start=$(date +%s); }

seq_step() {
    local label=$1 t0 out rc p f
    shift
    echo "=== $seq_name: $label ==="
    t0=$(date +%s)
    out="$("$@" 2>&1)"
    rc=$?
    printf '%s\n' "$out"
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL [$label] exited $rc without a failed check"
        f=1
    fi
    seq_passed=$((seq_passed + p)) seq_failed=$((seq_failed + f))
    echo "=== $seq_name: $label: $p passed, $f failed, $(( $(date +%s) - t0 ))s ==="
}

seq_end() {
    echo "$seq_name: $seq_passed passed, $seq_failed failed in $(( $(date +%s) - seq_start ))s${1:+; $1}"
    echo "GALLIUM-PESTER-RESULT {\"Passed\":$seq_passed,\"Failed\":$seq_failed,\"Skipped\":0}"
    [ "$seq_failed" -eq 0 ]
}
