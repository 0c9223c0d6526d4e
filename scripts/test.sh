#!/usr/bin/env bash
# The whole test suite, the README's test command and what CI runs:
#   1. installs the servers the tests start (PostgreSQL, Redis) from Debian's
#      packages when they are missing (scripts/test-deps.sh; runs as any user
#      when they are installed: the tests start their own as that user);
#   2. builds the module for macOS and Windows (the server must run there, on
#      the portable transport);
#   3. runs every Go test with the race detector, then the end-to-end tests
#      of ./cmd/junction again on the portable WebSocket transport (the first
#      pass uses Linux's default, epoll); each pass lists the tests that
#      skipped and fails on a skip that scripts/testsummary does not allow;
#      the first pass also records coverage of the whole suite, and
#      scripts/coverfloor fails when a package is below its floor
#      (scripts/coverfloor/floors.txt);
#   4. the TypeScript SDK (sdk/ts): npm ci, the generated types checked
#      against the server's contract, the build, and its tests with Node's
#      test runner and headless Chromium against the junction binary;
#   5. the web console (console/): npm ci, the committed build in
#      internal/web/console checked against a fresh one, the type check, and
#      its tests in headless Chromium against the junction binary;
#   6. runs each fuzz target briefly (FUZZTIME, default 10s each).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh

# The PostgreSQL half of the store suite must run, not skip, here.
export JUNCTION_REQUIRE_POSTGRES=1
# So must the Redis broker's tests (internal/cluster, internal/redistest).
export JUNCTION_REQUIRE_REDIS=1

echo "== go vet"
go vet ./...

echo "== cross-builds: darwin, windows"
GOOS=darwin go build ./...
GOOS=windows go build ./...

# The test passes go through scripts/testsummary: it prints what go test
# would (results, failures' output) and the skipped tests, and fails on a
# skip outside its allow-list (a skipped test proves nothing).
summary_dir=$(mktemp -d)
trap 'rm -rf "$summary_dir"' EXIT
go build -o "$summary_dir/testsummary" ./scripts/testsummary
go build -o "$summary_dir/coverfloor" ./scripts/coverfloor

# -coverpkg=./... counts, for every package, the statements any test of the
# module ran (the end-to-end tests of ./cmd/junction drive most of the
# server); the profile holds each block once per test binary and
# coverfloor merges them.
echo "== go test -race (with coverage of the whole suite)"
go test -json -race -count=1 -timeout 20m -coverpkg=./... -coverprofile="$summary_dir/cover.out" ./... | "$summary_dir/testsummary"
"$summary_dir/coverfloor" -profile "$summary_dir/cover.out" -floors scripts/coverfloor/floors.txt

# The WebSocket end-to-end tests once more, on the other transport. The
# client package's own tests run against a test server of their own, not
# the transport, so only ./cmd/junction (which also drives the Go SDK
# against the real server) runs twice.
echo "== go test -race ./cmd/junction on the portable transport"
JUNCTION_HUB_TRANSPORT=portable go test -json -race -count=1 -timeout 20m ./cmd/junction | "$summary_dir/testsummary"

# --- sdk/ts: the TypeScript SDK -------------------------------------------
# npm ci installs the pinned packages (package-lock.json); gen:check fails
# when src/gen differs from what `junction contract` generates (run
# `npm run gen` in sdk/ts and commit); the tests start the binary built here
# on free loopback ports, and drive the browser bundle in /usr/bin/chromium
# (installed by scripts/test-deps.sh).
echo "== sdk/ts: npm ci, generated types up to date, build, node --test (Node and headless Chromium)"
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null || ! command -v npm >/dev/null; then
  echo "sdk/ts: needs Node.js >= 20 and npm on PATH (found: $(node --version 2>/dev/null || echo no node))" >&2
  exit 1
fi
go build -o "$summary_dir/junction" ./cmd/junction
(
  cd sdk/ts
  npm ci --no-audit --no-fund --loglevel=error
  JUNCTION_TEST_BIN="$summary_dir/junction" npm run --silent gen:check
  npm run --silent build
  JUNCTION_TEST_BIN="$summary_dir/junction" npm test
)
# --- end sdk/ts -------------------------------------------------------------

# --- console: the web console ---------------------------------------------
# Built on the SDK's sources (it needs sdk/ts's node_modules, installed by
# the block above). build:check fails when internal/web/console, which the
# binary embeds, is not what the sources build (run `npm run build` in
# console/ and commit); the tests drive every page in /usr/bin/chromium
# against the binary built above, check the 150 KB gzipped budget and that
# no request leaves the server's origin; screenshots go to
# console/test-output/.
echo "== console: npm ci, type check, committed build up to date, tests in headless Chromium"
(
  cd console
  npm ci --no-audit --no-fund --loglevel=error
  npm run --silent typecheck
  npm run --silent build:check
  JUNCTION_TEST_BIN="$summary_dir/junction" npm test
)
# --- end console ------------------------------------------------------------

# fuzz_one PKG TARGET runs one target for FUZZTIME. Go 1.26's fuzz
# coordinator can report "context deadline exceeded" at the -fuzztime
# boundary on a loaded machine with no failing input (go.dev/issue/75804,
# fixed in Go 1.27): such a run, which wrote no new input under
# testdata/fuzz/TARGET, is run once more. A failure that wrote an input, or
# any other failure, fails the suite.
fuzz_one() {
  local pkg=$1 target=$2 corpus before out
  corpus="$pkg/testdata/fuzz/$target"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  for attempt in 1 2; do
    if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" "$pkg" 2>&1); then
      printf '%s\n' "$out" | tail -n 3
      return 0
    fi
    printf '%s\n' "$out"
    if [ "$attempt" = 1 ] && printf '%s' "$out" | grep -q 'context deadline exceeded' &&
      [ "$(ls "$corpus" 2>/dev/null | sort)" = "$before" ]; then
      echo "-- $target: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input written; running it again"
      continue
    fi
    return 1
  done
  return 1
}

echo "== fuzz (${FUZZTIME:-10s} each)"
# Every Fuzz* function in the module, found by name so new targets run too.
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "-- $pkg $target"
    fuzz_one "$pkg" "$target"
  done
done
echo "== all tests passed"
