#!/bin/sh
# Runs each libFuzzer binary for a bounded time on its corpus.
# Usage: scripts/fuzz.sh SECONDS build/fuzz/<name>...
# The working corpus (build/fuzz/corpus/<name>) starts from the committed
# seeds (fuzz/corpus/<name>) and keeps what each run finds; a crash, leak,
# sanitizer report or timeout leaves its input in build/fuzz/crash-<name>-*
# (reproduce: build/fuzz/<name> FILE) and makes the run fail.
set -u
secs=$1; shift
# Leaks inside system libraries we cannot fix (each line there says why).
export LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
status=0
for bin in "$@"; do
  name=${bin##*/}
  work=build/fuzz/corpus/$name
  mkdir -p "$work"
  dict=""
  [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
  seeds=""
  [ -d "fuzz/corpus/$name" ] && seeds="fuzz/corpus/$name"
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="build/fuzz/crash-$name-" $dict "$work" $seeds >"build/fuzz/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; see build/fuzz/$name.log and build/fuzz/crash-$name-*" >&2
    tail -n 40 "build/fuzz/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "build/fuzz/$name.log" | tail -n 2
  fi
  # A crash exits before the target removes its scratch folder.
  for d in /dev/shm/mmdet-fuzz-* "${TMPDIR:-/tmp}"/mmdet-fuzz-*; do
    [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rm -rf "$d"
  done
done
exit $status
