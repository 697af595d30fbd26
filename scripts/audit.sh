#!/usr/bin/env bash
# `make audit`: dependency advisories, then the suite's secret tests run with one known secret
# value and everything they leave behind (their work directories are kept), the shared memory
# and MemoBuild's private tmpfs directory searched for it. Any hit fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN=${BUN:-bun}

echo "== dependency advisories (bun audit)"
if advisories=$("$BUN" audit 2>&1); then
  echo "$advisories"
elif grep -qi "vulnerab" <<<"$advisories"; then
  echo "$advisories" >&2
  exit 1
else
  # Not a finding: the advisory service did not answer (an offline or proxied registry).
  echo "$advisories" >&2
  echo "warning: the advisory database could not be reached; dependency advisories were NOT checked" >&2
fi

secret="memobuild-audit-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
scratch=$(mktemp -d /tmp/memobuild-audit-XXXXXX)
echo "== secret tests, leaving their files in $scratch"
TMPDIR=$scratch MEMOBUILD_TEST_SECRET=$secret MEMOBUILD_TEST_KEEP=1 \
  "$BUN" test test/build.test.ts test/trust.test.ts -t "secret"

echo "== searching for the secret value"
found=$(grep -rlaF "$secret" "$scratch" /dev/shm /run/memobuild 2>/dev/null || true)
if [ -n "$found" ]; then
  echo "the secret value is in files left behind:" >&2
  echo "$found" >&2
  exit 1
fi
echo "no file holds the secret value ($(find "$scratch" -type f | wc -l) files searched under $scratch)"
rm -rf "$scratch"
