#!/usr/bin/env bash
# Runs every test in the solution and ends with one line: "tests: N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

if ! command -v dotnet >/dev/null 2>&1; then
  echo "test.sh: the .NET 10 SDK is needed and 'dotnet' is not on PATH. Install the .NET 10 SDK and retry." >&2
  exit 127
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# System components the tests use for real (never mocked, never skipped): install what is missing.
missing=()
/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || missing+=(python3 python3-cryptography)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)   # the plain sqlite3 shell must refuse TDE files
{ [ -f /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1; } || missing+=(softhsm2)   # a real PKCS#11 token
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}; install them with 'sudo apt-get install -y ${missing[*]}' and retry." >&2
    echo "tests: 0 passed, 1 failed"
    exit 1
  fi
fi
mkdir -p artifacts
log=artifacts/test.log

# The official Alibaba Cloud clients for the server's SDK test, pinned by package-lock.json.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: Node.js and npm are needed for the SDK client test; install them ('apt-get install -y nodejs npm') and retry." >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
fi
if [ ! -d tests/sdk-client/node_modules/@alicloud/pop-core ] || [ ! -d tests/sdk-client/node_modules/@alicloud/openapi-client ] || [ ! -d tests/sdk-client/node_modules/@alicloud/kms20160120 ]; then
  echo "== npm ci (tests/sdk-client)"
  (cd tests/sdk-client && npm ci --no-audit --no-fund --loglevel=error) || { echo "tests: 0 passed, 1 failed"; exit 1; }
fi

echo "== build"
if ! dotnet build TdeEngine.sln -c Release --nologo -v quiet -clp:'ErrorsOnly;NoSummary'; then
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

echo "== test"
dotnet test TdeEngine.sln -c Release --no-build --nologo -v quiet 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# dotnet test prints one summary per test assembly: "Passed!  - Failed: 0, Passed: 57, Skipped: 0, ...".
count() { grep -Eo "$1: +[0-9]+" "$log" | awk '{ s += $2 } END { print s + 0 }'; }
passed=$(count Passed)
failed=$(count Failed)
skipped=$(count Skipped)
if [ "$skipped" -ne 0 ]; then
  echo "test.sh: $skipped test(s) were skipped; a skipped test counts as a failure here." >&2
  failed=$((failed + skipped))
  status=1
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1   # the runner failed without a count (crash, build error): never report green
fi
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
