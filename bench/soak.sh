#!/usr/bin/env bash
# bench/soak.sh - the soak-and-chaos run of corral-proxy (issue 12, section 4), run by `make soak`
# (not part of `make test`): the proxy on the embedded store, then on a real redis-server, under
# wrk load while faults are injected on a schedule; one table at the end (bench/soak.py says
# what is injected and checked). Exit 0 only when the run is clean.
#
#   bench/soak.sh [path/to/corral-proxy]    SOAK_SECONDS=300 (split between the two stores)
#                                           SOAK_STORES=mem,redis
# The idle-connection burst needs `ulimit -n` (hard) of about 8,000.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=${1:-build/release/corral-proxy}
if [ ! -x "$PROXY" ]; then
    echo "bench/soak.sh: $PROXY not found (make soak builds it)" >&2
    exit 1
fi
scripts/bootstrap wrk redis-server
exec /usr/bin/python3 bench/soak.py "$PROXY"
