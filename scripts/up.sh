#!/usr/bin/env bash
# The main job: install what is missing, build, start a local 3-node cluster in ./cluster
# (3 etcd members, 3 PostgreSQL 15 + pgwarden agents). Extra arguments go to 'pgwarden up'.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/pgwarden up --dir "${PGWARDEN_DIR:-cluster}" "$@"
