#!/usr/bin/env bash
# The whole test suite: Debian deps, venv, a throwaway PostgreSQL, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" tests/auth).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/venv.sh
pgdir="$(mktemp -d /tmp/eucalypt-pg.XXXXXX)"
pgport="${EUCALYPT_TEST_PG_PORT:-55432}"
cleanup() { scripts/postgres.sh stop "$pgdir" || true; rm -rf "$pgdir"; }
trap cleanup EXIT
EUCALYPT_TEST_PG_URL="$(scripts/postgres.sh start "$pgdir" "$pgport")"
export EUCALYPT_TEST_PG_URL
echo "test.sh: PostgreSQL for tests at $EUCALYPT_TEST_PG_URL"
.venv/bin/ruff check src tests bench
status=0
.venv/bin/pytest "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass.
exit "$status"
