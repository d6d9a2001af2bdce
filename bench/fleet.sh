#!/usr/bin/env bash
# bench/fleet.sh - fleets of 2 and 4 proxies behind one origin, one table (issue 16, section 3):
# corral-proxy on one redis-server, with the near cache and without it, and on a Redis Cluster
# (with the near cache where the cluster store takes it), beside as many Varnish and nginx
# proxy_cache instances; bench/fleet.py says what is measured and how.
# Run by `make bench-fleet`, which builds the release binaries (corral-proxy and the corral CLI,
# with which the cluster URL is tried).
#
#   bench/fleet.sh [path/to/corral-proxy]   BENCH_SECONDS=10 BENCH_RUNS=1 FLEET_SIZES=2,4
#                                           FLEET_KINDS=redis,redis-far,cluster,varnish,nginx
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=${1:-build/release/corral-proxy}
if [ ! -x "$PROXY" ] || [ ! -x "$(dirname "$PROXY")/corral" ]; then
    echo "bench/fleet.sh: $PROXY or the corral CLI beside it not found (make bench-fleet builds them)" >&2
    exit 1
fi
scripts/bootstrap nginx varnish wrk redis-server redis-tools
exec /usr/bin/python3 bench/fleet.py "$PROXY"
