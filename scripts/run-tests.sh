#!/usr/bin/env bash
# Runs every Criterion test binary, prints each one's synthesis and a final
# "N passed, N failed" line; exits non-zero if any binary failed.
set -u
# Idle OpenMP workers sleep instead of spinning (see md_process_init): with
# two test jobs on two cores, spinning threads starve the ones at work.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# Under SANITIZE=1: leaks that lie inside system libraries' caches are not
# ours (scripts/lsan.supp); tools the tests start inherit this too.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
passed=0; failed=0; bad=()
for t in "$@"; do
  log=$(mktemp)
  "$t" --jobs "${TEST_JOBS:-2}" >"$log" 2>&1; rc=$?
  line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
  p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
  f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
  c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
  p=${p:-0}; f=$(( ${f:-0} ))
  if [ "$rc" != 0 ] || [ -z "$line" ] || [ "$f" != 0 ]; then
    cat "$log"; bad+=("$(basename "$t")")
    [ "$f" = 0 ] && f=1
  fi
  echo "$(basename "$t"): ${line#*Synthesis: }"
  passed=$((passed + p)); failed=$((failed + f)); : "${c:-}"
  rm -f "$log"
done
[ ${#bad[@]} -gt 0 ] && echo "failed: ${bad[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
