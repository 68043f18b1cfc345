#!/usr/bin/env bash
# Every check and test suite of the project, in the order a failure is cheapest to find.
# Ends with one line `N passed, M failed`, summed over the Rust and TypeScript tests (a
# check that fails without running tests, such as formatting or a build, counts as one
# failure), and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0
failed_steps=()

# Runs a step that has no test count of its own.
check() {
  local name=$1
  shift
  echo "==> $name"
  if ! "$@"; then
    failed=$((failed + 1))
    failed_steps+=("$name")
  fi
}

# Runs a test suite, teeing its output to $logs/$1.log for counting.
suite() {
  local name=$1
  shift
  echo "==> $name"
  "$@" 2>&1 | tee "$logs/$name.log"
  return "${PIPESTATUS[0]}"
}

# Adds a suite's counts; a suite that failed without reporting a failed test (it did not
# compile, crashed, ...) still counts as one failure.
count() {
  local name=$1 status=$2 suite_passed=$3 suite_failed=$4
  passed=$((passed + suite_passed))
  failed=$((failed + suite_failed))
  if [ "$status" -ne 0 ]; then
    failed_steps+=("$name")
    [ "$suite_failed" -eq 0 ] && failed=$((failed + 1))
  fi
}

# Sums the `test result: ok. N passed; M failed; ...` lines libtest prints per test binary.
cargo_counts() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
    /^test result:/ {
      for (i = 1; i < NF; i++) {
        if ($(i + 1) ~ /^passed/) p += $i
        if ($(i + 1) ~ /^failed/) f += $i
      }
    }
    END { print p + 0, f + 0 }'
}

check "cargo fmt" cargo fmt --all -- --check
check "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings

suite cargo-test cargo test --workspace --locked
status=$?
read -r rust_passed rust_failed < <(cargo_counts "$logs/cargo-test.log")
count "cargo test" "$status" "$rust_passed" "$rust_failed"

# The CUDA kernels without a GPU: each runs on our CPU emulation of CUDA against the CPU
# backend, then every kernel is compiled by NVRTC 13.0 (PyPI wheel) for sm_80 and sm_90 and
# checked by ptxas.
check "cargo clippy (cuda, kernel-emu)" cargo clippy -p glimpse-core --all-targets --locked --features cuda,kernel-emu -- -D warnings
suite kernels-emu bash scripts/test-kernels-emu.sh
status=$?
read -r k_passed k_failed < <(cargo_counts "$logs/kernels-emu.log")
count "kernels (emulated)" "$status" "$k_passed" "$k_failed"

suite kernels-nvrtc bash scripts/check-kernels.sh
status=$?
read -r n_passed n_failed < <(cargo_counts "$logs/kernels-nvrtc.log")
count "kernels (NVRTC)" "$status" "$n_passed" "$n_failed"

check "typecheck" npm run --silent typecheck
check "build" npm run --silent build

suite uvu env NO_COLOR=1 npx uvu -r tsx --no-color test '\.test\.ts$'
status=$?
# uvu closes with `Total: N` and `Passed: N`; skipped tests are not in Total.
read -r ts_total ts_passed < <(sed 's/\x1b\[[0-9;]*m//g' "$logs/uvu.log" |
  awk '/^ *Total:/ { t = $2 } /^ *Passed:/ { p = $2 } END { print t + 0, p + 0 }')
count "uvu" "$status" "$ts_passed" "$((ts_total - ts_passed))"

if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed: ${failed_steps[*]}"
fi
echo "$passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ] && [ "$failed" -eq 0 ]
