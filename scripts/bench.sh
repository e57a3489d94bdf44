#!/usr/bin/env bash
# Runs every benchmark binary and its PyTorch peer, then prints one line per
# benchmark: bench <name> ours_ms=<median> peer_ms=<median> speedup=<peer/ours>
#
# Protocol: build/bench/bench_<x> prints lines "bench <name> ours_ms=<ms> [k=v ...]";
# bench/peer_<x>.py (optional; run with /usr/bin/python3 and torch, 2 threads)
# prints lines "peer <name> peer_ms=<ms> [peer_k=v ...]". Names join the two; the
# peer's other peer_* fields (e.g. peer_mb, its peak memory) are appended.
set -u
export MMDET_NUM_THREADS=${MMDET_NUM_THREADS:-2}
ours=$(mktemp); peer=$(mktemp); trap 'rm -f "$ours" "$peer"' EXIT
for b in "$@"; do
  "$b" | tee -a /dev/stderr | grep '^bench ' >>"$ours" || echo "bench: $b failed" >&2
  p="bench/peer_${b##*/bench_}.py"
  if [ -f "$p" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 "$p" | grep '^peer ' >>"$peer" || echo "bench: $p failed" >&2
  fi
done
echo "---- summary (threads=$MMDET_NUM_THREADS)"
awk 'NR==FNR { for (i = 3; i <= NF; i++) if ($i ~ /^peer_ms=/) { split($i, kv, "="); p[$2] = kv[2] }
                 else if ($i ~ /^peer_/) x[$2] = x[$2] " " $i
               next }
     { line = $0; o = ""; for (i = 3; i <= NF; i++) if ($i ~ /^ours_ms=/) { split($i, kv, "="); o = kv[2] }
       if (($2 in p) && o != "" && o > 0) line = sprintf("%s peer_ms=%s speedup=%.2f%s", line, p[$2], p[$2] / o, x[$2])
       print line }' "$peer" "$ours"
