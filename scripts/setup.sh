#!/usr/bin/env bash
# Installs what pgwarden needs on Debian 12 and builds it into build/.
#   scripts/setup.sh          runtime + build dependencies, release build
#   scripts/setup.sh --test   also the test dependencies
# Run as root (apt). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

pkgs=(postgresql-15 postgresql-client-15 etcd-server etcd-client pgbackrest
      libcurl4-openssl-dev libjson-c-dev libinih-dev libmicrohttpd-dev libpq-dev libssl-dev
      meson ninja-build pkg-config gcc openssl)
if [ "$with_tests" = 1 ]; then
    pkgs+=(libcmocka-dev python3-pytest python3-pytest-xdist python3-psycopg2 python3-psycopg python3-asyncpg python3-yaml clang libclang-rt-14-dev clang-format iproute2
          procps curl git nftables iptables libnetfilter-queue-dev docker.io debootstrap)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages: ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
    # Debian's packages would start their own PostgreSQL (cluster 'main' on 5432) and etcd
    # (on 2379) on a machine with systemd: keep them out of the way of pgwarden's cluster.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/pgwarden.conf
    if [ -d /run/systemd/system ]; then
        systemctl mask etcd.service prometheus.service >/dev/null 2>&1 || true
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "setup: installing ${missing[*]}"
    if ! apt-get install -y -q "${missing[@]}" >/tmp/pgwarden-apt.log 2>&1; then
        apt-get update -q >>/tmp/pgwarden-apt.log 2>&1
        apt-get install -y -q "${missing[@]}" >>/tmp/pgwarden-apt.log 2>&1 || {
            tail -20 /tmp/pgwarden-apt.log >&2; exit 1; }
    fi
    if [ -d /run/systemd/system ]; then
        systemctl stop etcd.service >/dev/null 2>&1 || true
    fi
fi

# Debian's Prometheus for the monitoring test (and `pgwarden up --with-prometheus`), without
# its recommended exporters; its own service (on 9090) is kept from starting.
if [ "$with_tests" = 1 ] && ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null |
        grep -q "install ok installed"; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing package: prometheus; run this script as root to install it" >&2
        exit 1
    fi
    if [ -d /run/systemd/system ]; then
        systemctl mask prometheus.service >/dev/null 2>&1 || true
    fi
    echo "setup: installing prometheus"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
        >>/tmp/pgwarden-apt.log 2>&1 || {
        apt-get update -q >>/tmp/pgwarden-apt.log 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            prometheus >>/tmp/pgwarden-apt.log 2>&1 || { tail -20 /tmp/pgwarden-apt.log >&2; exit 1; }
    }
    if [ -d /run/systemd/system ]; then
        systemctl stop prometheus.service >/dev/null 2>&1 || true
    fi
fi

# pgJDBC and a JDK (Java's single-file launcher compiles tests/drivers/jdbc/Reset.java)
# for the driver tests, and chromium (headless) for the status page's test, without
# their recommended packages.
if [ "$with_tests" = 1 ]; then
    jdk_missing=()
    for p in default-jdk-headless libpostgresql-jdbc-java chromium; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            jdk_missing+=("$p")
    done
    if [ "${#jdk_missing[@]}" -gt 0 ]; then
        echo "setup: installing ${jdk_missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${jdk_missing[@]}" >>/tmp/pgwarden-apt.log 2>&1 || {
            tail -20 /tmp/pgwarden-apt.log >&2; exit 1; }
    fi
fi

# node-postgres (npm's pg, pinned by tests/drivers/node/package-lock.json) for the driver
# tests: from npm's registry, with Debian's Node.js when the machine has none.
if [ "$with_tests" = 1 ] && [ ! -f tests/drivers/node/node_modules/pg/package.json ]; then
    if ! command -v npm >/dev/null; then
        echo "setup: installing nodejs npm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm \
            >>/tmp/pgwarden-apt.log 2>&1 || { tail -20 /tmp/pgwarden-apt.log >&2; exit 1; }
    fi
    echo "setup: npm ci in tests/drivers/node (node-postgres)"
    npm ci --prefix tests/drivers/node --no-audit --no-fund >/tmp/pgwarden-npm.log 2>&1 || {
        tail -20 /tmp/pgwarden-npm.log >&2; exit 1; }
fi

# A Debian cluster 15/main left over from an earlier install must not start at boot on 5432.
if [ "$(id -u)" = 0 ] && [ -f /etc/postgresql/15/main/start.conf ] &&
   command -v pg_lsclusters >/dev/null && pg_lsclusters 15 main 2>/dev/null | grep -q down; then
    grep -q '^manual' /etc/postgresql/15/main/start.conf ||
        echo manual > /etc/postgresql/15/main/start.conf
fi

# Link-time optimisation: the proxy's connection files call each other on every message
# (bench/RESULTS.md: without it the pooler spent 7-12 % more CPU per transaction).
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized -Db_lto=true >/dev/null
else
    meson configure build -Db_lto=true >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built $(pwd)/build/pgwarden"
