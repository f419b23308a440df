#!/usr/bin/env bash
# Runs every test: install what is missing, build under AddressSanitizer + UBSan,
# unit tests (cmocka), integration tests (pytest against real etcd and PostgreSQL),
# and the clang-format check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== clang-format"
bad=$(git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror 2>&1 | grep -c 'error:' || true)
if [ "$bad" != 0 ]; then
    git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror 2>&1 | head -30
    echo "clang-format: $bad places to fix (run: git ls-files '*.c' '*.h' | xargs clang-format -i)" >&2
    exit 1
fi

echo "== build (ASan + UBSan)"
if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined \
        -Dc_args=-fno-sanitize-recover=all -Db_lundef=false >/dev/null
fi
ninja -C build-asan

echo "== unit tests"
meson test -C build-asan --suite unit --print-errorlogs

echo "== integration tests"
export PGW_BUILD_DIR="$(pwd)/build-asan"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=/tmp/pgwarden-asan"
export UBSAN_OPTIONS="print_stacktrace=1"
timeout 1500 /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/integration "$@"
echo "== all tests passed"
