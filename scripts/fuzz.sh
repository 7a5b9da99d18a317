#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer with AddressSanitizer, on the stable toolchain via
# RUSTC_BOOTSTRAP=1) of every target in fuzz/fuzz_targets.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 60 s for each target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600  stop each target after that many
#                                            executions (SECONDS stays the bound)
#   FUZZ_SANITIZER=none scripts/fuzz.sh …    without AddressSanitizer: ~4× the execs/s.
#                                            The fuzzed code is safe Rust (the only
#                                            `unsafe` is the host ABI in filter/src/glue,
#                                            which no target reaches), so long runs use it;
#                                            CI's short runs keep the sanitizer.
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and dictionary
# (fuzz/dicts/TARGET.dict); inputs it finds go to fuzz/corpus/TARGET (not committed).
# A crash stops that target, leaves fuzz/artifacts/TARGET/crash-*, and fails the run:
# reproduce it with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…`
# (in fuzz/) and turn it into a unit test. Prints one row per target: executions,
# coverage (edges, features) and the result.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
san=${FUZZ_SANITIZER:-address}
shift || true
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s "$san" 2>&1 | tail -n 1 >&2
failed=0
printf '%-16s %14s %8s %8s  %s\n' target execs cov ft result
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if cargo fuzz run -s "$san" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -dict="dicts/$t.dict" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$t)"
    failed=1
    grep -E "panicked|ERROR: AddressSanitizer|SUMMARY" "$log" | head -n 5 >&2 || true
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
  printf '%-16s %14s %8s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
  rm -f "$log"
done
exit "$failed"
