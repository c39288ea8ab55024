#!/usr/bin/env bash
# Runs jitgate's fuzz targets with AFL++ (cargo-afl, stable Rust), each for a
# bounded time, starting from the committed seed corpora in fuzz/seeds/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 s per target, every target (jws dpop jsonrpc constraints
# tool_result manifest agent_file config). Findings go to fuzz/out/TARGET/;
# the script fails when any target found a crash or a hang, and prints where.
# Installs cargo-afl (and builds AFL++) on first use. CI runs it briefly
# (.ci/run: JITGATE_FUZZ_SECONDS, default 15); run it longer by hand, e.g.
#   scripts/fuzz.sh 3600 jsonrpc
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(jws dpop jsonrpc constraints tool_result manifest agent_file config)
fi
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac

if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-afl" >&2
  cargo install cargo-afl --locked --version 0.18.2
fi
# Builds AFL++ for this toolchain the first time; a no-op (with a message) after.
cargo afl config --build >/dev/null 2>&1 || true

if ! (cd fuzz && cargo metadata --locked --format-version 1 >/dev/null 2>&1); then
  echo "fuzz.sh: fuzz/Cargo.lock is out of date with jitgate's dependencies;" >&2
  echo "  run (cd fuzz && cargo update -w) and commit fuzz/Cargo.lock" >&2
  exit 2
fi
echo "fuzz.sh: building the instrumented harness (fuzz/)" >&2
(cd fuzz && cargo afl build --release --locked)
harness=fuzz/target/release/jitgate-fuzz

# This machine's kernel settings are not ours to change: tell AFL++ to carry on.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1

failed=0
for t in "${targets[@]}"; do
  if [ ! -d "fuzz/seeds/$t" ]; then
    echo "fuzz.sh: unknown target '$t' (no fuzz/seeds/$t)" >&2
    exit 2
  fi
  out="fuzz/out/$t"
  rm -rf "$out"
  mkdir -p fuzz/out
  echo "fuzz.sh: $t for ${seconds}s" >&2
  # -V: stop after this many seconds; -t: a single input taking over 1 s is a hang;
  # -m: a single input needing over 1 GB of address space is a crash (unbounded allocation).
  timeout --kill-after=30 $((seconds + 120)) \
    cargo afl fuzz -V "$seconds" -t 1000 -m 1024 -i "fuzz/seeds/$t" -o "$out" -- "$harness" "$t" >"fuzz/out-$t.log" 2>&1 || {
      echo "fuzz.sh: afl-fuzz for $t did not finish cleanly; see fuzz/out-$t.log" >&2
      tail -20 "fuzz/out-$t.log" >&2
      failed=1
      continue
    }
  stats="$out/default/fuzzer_stats"
  execs=$(awk -F': ' '/^execs_done/ {print $2}' "$stats" 2>/dev/null || echo "?")
  paths=$(awk -F': ' '/^corpus_count/ {print $2}' "$stats" 2>/dev/null || echo "?")
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  echo "fuzz.sh: $t: $execs executions, $paths corpus entries, $crashes crashes, $hangs hangs" >&2
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
    echo "fuzz.sh: $t FOUND PROBLEMS; inputs in $out/default/crashes and $out/default/hangs" >&2
    echo "  reproduce: $harness $t < FILE" >&2
    failed=1
  fi
  rm -f "fuzz/out-$t.log"
done
exit $failed
