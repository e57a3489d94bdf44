#!/usr/bin/env bash
# Runs every benchmark binary and its PyTorch peer, then prints one line per
# benchmark: bench <name> ours_ms=<median> peer_ms=<median> speedup=<peer/ours>
#
# Protocol: build/bench/bench_<x> prints lines "bench <name> ours_ms=<ms> [k=v ...]";
# bench/peer_<x>.py (optional; run with /usr/bin/python3 and torch, 2 threads;
# a peer that does not import torch runs without it) prints lines
# "peer <name> peer_ms=<ms> [k=v ...]". Names join the two; the peer's extra
# fields are appended, with cpu_speedup (peer_cpu_ms / ours_cpu_ms) and
# mem_ratio (ours_mb / peer_mb) when both sides give them.
set -u
export MMDET_NUM_THREADS=${MMDET_NUM_THREADS:-2}
# Both sides run under the wait policy our tools use (md_process_init); the
# PyTorch peer's OpenMP pool reads the same variable.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# The peer's interpreter (a command, may carry arguments): /usr/bin/python3
# has Debian's torch; a GPU machine may have its own.
PY=${MMDET_BENCH_PYTHON:-/usr/bin/python3}
ours=$(mktemp); peer=$(mktemp); trap 'rm -f "$ours" "$peer"' EXIT
for b in "$@"; do
  "$b" | tee -a /dev/stderr | grep '^bench ' >>"$ours" || echo "bench: $b failed" >&2
  p="bench/peer_${b##*/bench_}.py"
  if [ -f "$p" ] && { ! grep -q '^import torch' "$p" || $PY -c 'import torch' 2>/dev/null; }; then
    $PY "$p" | grep '^peer ' >>"$peer" || echo "bench: $p failed" >&2
  fi
done
echo "---- summary (threads=$MMDET_NUM_THREADS)"
awk 'FILENAME == ARGV[1] { x = ""; for (i = 3; i <= NF; i++) { split($i, kv, "="); pv[$2, kv[1]] = kv[2]; if (kv[1] != "peer_ms") x = x " " $i }
               if (pv[$2, "peer_ms"] != "") p[$2] = pv[$2, "peer_ms"]; extra[$2] = x; next }
     { line = $0; delete ov; for (i = 3; i <= NF; i++) { split($i, kv, "="); ov[kv[1]] = kv[2] }
       o = ov["ours_ms"]
       if (($2 in p) && o != "" && o > 0) {
         line = sprintf("%s peer_ms=%s%s speedup=%.2f", line, p[$2], extra[$2], p[$2] / o)
         if (ov["ours_cpu_ms"] > 0 && pv[$2, "peer_cpu_ms"] > 0)
           line = sprintf("%s cpu_speedup=%.2f", line, pv[$2, "peer_cpu_ms"] / ov["ours_cpu_ms"])
         if (ov["ours_mb"] > 0 && pv[$2, "peer_mb"] > 0)
           line = sprintf("%s mem_ratio=%.3f", line, ov["ours_mb"] / pv[$2, "peer_mb"])
       }
       print line }' "$peer" "$ours"
