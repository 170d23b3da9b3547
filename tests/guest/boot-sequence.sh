# shellcheck shell=bash
# The per-step loop of the multi-boot proofs (reboot-test.sh, boot-binding-test.sh, interruption-test.sh), sourced by
# them: each step (a guest boot, or a host step between boots) runs, its output is printed, and its "PASS ..."/"FAIL ..."
# lines are counted; a step whose exit code is not the expected one (0 unless --rc) without a FAIL line counts as one
# failure. seq_end prints the summary and last the marker line build.ps1 counts:
#   GALLIUM-PESTER-RESULT {"Passed":N,"Failed":N,"Skipped":0}
#   seq_init NAME                   start the count (NAME prefixes the "=== NAME: ... ===" lines)
#   seq_step [--rc N] LABEL CMD...  run one step; its output and exit code stay in seq_out and seq_rc
#   seq_check NAME CMD...           one more check of the harness's own (PASS/FAIL [NAME])
#   seq_end [NOTE]                  summary; returns 1 when any check failed
seq_init() { seq_name=$1 seq_passed=0 seq_failed=0 seq_start=$(date +%s) seq_out="" seq_rc=0; }

seq_step() {
    local expect=0 label t0 p f
    if [ "$1" = --rc ]; then expect=$2; shift 2; fi
    label=$1
    shift
    echo "=== $seq_name: $label ==="
    t0=$(date +%s)
    seq_out="$("$@" 2>&1)"
    seq_rc=$?
    printf '%s\n' "$seq_out"
    p=$(grep -c '^PASS ' <<<"$seq_out")
    f=$(grep -c '^FAIL ' <<<"$seq_out")
    if [ "$seq_rc" -ne "$expect" ] && [ "$f" -eq 0 ]; then
        echo "FAIL [$label] exited $seq_rc (expected $expect) without a failed check"
        f=1
    fi
    seq_passed=$((seq_passed + p)) seq_failed=$((seq_failed + f))
    echo "=== $seq_name: $label: $p passed, $f failed, $(( $(date +%s) - t0 ))s ==="
}

seq_check() {
    local name=$1
    shift
    if "$@"; then echo "PASS $name"; seq_passed=$((seq_passed + 1)); else echo "FAIL $name"; seq_failed=$((seq_failed + 1)); fi
}

seq_end() {
    echo "$seq_name: $seq_passed passed, $seq_failed failed in $(( $(date +%s) - seq_start ))s${1:+; $1}"
    echo "GALLIUM-PESTER-RESULT {\"Passed\":$seq_passed,\"Failed\":$seq_failed,\"Skipped\":0}"
    [ "$seq_failed" -eq 0 ]
}
