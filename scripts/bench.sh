#!/bin/sh
# Runs each benchmark binary given on the command line from the repository
# root; each prints its own "bench <name> ..." lines. Exits non-zero if any fails.
set -u
rc=0
for b in "$@"; do
  echo "== $(basename "$b")"
  "$b" || { echo "bench: $(basename "$b") failed" >&2; rc=1; }
done
exit $rc
