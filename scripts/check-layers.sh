#!/bin/sh
# The layers of src/ and what each may include; fails (naming the file and line) when
# a file includes a header of a layer above it or beside it. Run by the build (meson's
# 'layers' target) so that a wrong-way include fails it.
#   common <- etcd, pgproto <- cluster <- node <- agent;  cluster <- proxy;  node <- cli
# usage: check-layers.sh SRC_DIR [STAMP_FILE]
set -eu
src=$1
allowed() {
    case $1 in
    common) echo "common" ;;
    etcd) echo "common etcd" ;;
    pgproto) echo "common pgproto" ;;
    cluster) echo "common etcd cluster" ;;
    node) echo "common etcd cluster node" ;;
    agent) echo "common etcd cluster node agent" ;;
    proxy) echo "common etcd pgproto cluster proxy" ;;
    cli) echo "common etcd cluster node cli" ;;
    *) echo "" ;;
    esac
}
bad=0
for dir in "$src"/*/; do
    layer=$(basename "$dir")
    ok=$(allowed "$layer")
    if [ -z "$ok" ]; then
        echo "check-layers: $dir is not a known layer (add it to scripts/check-layers.sh)" >&2
        bad=1
        continue
    fi
    for f in "$dir"*.c "$dir"*.h; do
        [ -e "$f" ] || continue
        grep -n '^#include "[a-z_]*/' "$f" | while IFS= read -r line; do
            to=$(echo "$line" | sed 's/^[0-9]*:#include "\([a-z_]*\)\/.*/\1/')
            case " $ok " in
            *" $to "*) ;;
            *) echo "$f:${line%%:*}: the $layer layer includes $to/ (it may use: $ok)" ;;
            esac
        done
    done
done >"${TMPDIR:-/tmp}/check-layers.$$"
if [ -s "${TMPDIR:-/tmp}/check-layers.$$" ]; then
    cat "${TMPDIR:-/tmp}/check-layers.$$" >&2
    bad=1
fi
rm -f "${TMPDIR:-/tmp}/check-layers.$$"
[ "$bad" = 0 ] || exit 1
[ $# -lt 2 ] || : >"$2"
