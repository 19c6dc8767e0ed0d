#!/usr/bin/env bash
# Memory-safety checks of the compiled kernels, in a private copy of the repository.
#
#   tools/memcheck.sh [asan|valgrind|all] [pytest arguments...]
#
# asan      builds _kernels/_engine with AddressSanitizer and bounds checks
#           (BPFAST_SANITIZE=1 BPFAST_DEBUG=1) and runs the test suite with libasan
#           preloaded: any out-of-bounds read or write, use-after-free or double free in
#           the kernels aborts the run with a report.
# valgrind  builds a plain debug build (-O0 -g, bounds checks on) and runs a quick
#           subset of the tests under valgrind memcheck; errors whose stack passes
#           through bpfast's extensions fail the run (Python's own are ignored).
# all       both (the default).
#
# The copy holds the working tree's tracked and untracked, non-ignored files, so
# uncommitted kernel edits are checked too; the shared in-place build in src/ is never
# touched. Set BPFAST_MEMCHECK_DIR to keep the copy somewhere (default: a temp dir,
# removed afterwards unless BPFAST_MEMCHECK_KEEP=1). Default pytest targets: the kernel,
# small-product, tiny-layer, network, validation, fuzz, divergence, io, concurrency,
# optimizer, loss, safety, engine, consistency and sparse-input tests.
set -euo pipefail

MODE=all
case "${1:-}" in
    asan|valgrind|all) MODE=$1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
# The interpreter itself, not a wrapper (a pyenv shim is a shell script that valgrind would
# trace instead of Python).
PY=$("$PY" -c 'import sys; print(sys.executable)')
WORK=${BPFAST_MEMCHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/bpfast-memcheck.XXXXXX")}
if [[ -z "${BPFAST_MEMCHECK_DIR:-}" && -z "${BPFAST_MEMCHECK_KEEP:-}" ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

DEFAULT_TESTS=(tests/test_kernels.py tests/test_small_gemm.py tests/test_tiny.py tests/test_network.py tests/test_gradients.py
               tests/test_validation.py tests/test_validation_functional.py tests/test_fuzz.py
               tests/test_divergence.py tests/test_io.py tests/test_concurrency.py
               tests/test_optimizers.py tests/test_losses.py tests/test_safety.py tests/test_engine.py
               tests/test_consistency.py tests/test_sparse_and_full_batch.py)
if [[ $# -gt 0 ]]; then TESTS=("$@"); else TESTS=(); for t in "${DEFAULT_TESTS[@]}"; do [[ -e "$REPO/$t" ]] && TESTS+=("$t"); done; fi

copy_tree() {   # $1: destination
    rm -rf "$1" && mkdir -p "$1"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | grep -zv -e '\.so$' -e '^src/bpfast/_kernels\.c$' -e '^src/bpfast/_engine\.c$' \
        | tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$1"
}

build() {   # $1: tree, then VAR=value... for the build environment
    local tree=$1; shift
    echo "== building in $tree ($*)"
    (cd "$tree" && env "$@" "$PY" setup.py -q build_ext --inplace >"$tree/build.log" 2>&1) \
        || { tail -30 "$tree/build.log"; echo "memcheck: build failed" >&2; exit 1; }
}

check_import() {   # $1: tree; fails unless bpfast is imported from the tree
    local where
    where=$(cd "$1" && env "${@:2}" PYTHONPATH="$1/src" "$PY" -c 'import bpfast, bpfast._kernels as k; print(k.__file__)')
    [[ "$where" == "$1/src/"* ]] || { echo "memcheck: imported bpfast from $where, not $1" >&2; exit 1; }
    echo "== testing $where"
}

run_asan() {
    local tree="$WORK/asan" libasan
    libasan=$(gcc -print-file-name=libasan.so)
    [[ -e "$libasan" ]] || { echo "memcheck: no libasan.so (gcc -print-file-name=libasan.so)" >&2; exit 1; }
    copy_tree "$tree"
    build "$tree" BPFAST_SANITIZE=1 BPFAST_DEBUG=1
    # The tree's extensions must really be instrumented.
    local so
    for so in "$tree"/src/bpfast/_kernels*.so "$tree"/src/bpfast/_engine*.so; do
        [[ $(nm -D "$so" | grep -c __asan_) -gt 0 ]] \
            || { echo "memcheck: $so is not built with AddressSanitizer" >&2; exit 1; }
    done
    local envs=(LD_PRELOAD="$libasan" PYTHONMALLOC=malloc
                ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:allocator_may_return_null=1")
    check_import "$tree" "${envs[@]}"
    echo "== AddressSanitizer: pytest ${TESTS[*]}"
    (cd "$tree" && env "${envs[@]}" PYTHONPATH="$tree/src" BPFAST_FUZZ_EXAMPLES="${BPFAST_FUZZ_EXAMPLES:-300}" \
        "$PY" -m pytest -q -p no:cacheprovider -x "${TESTS[@]}")
    echo "== AddressSanitizer: no error"
}

run_valgrind() {
    command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed" >&2; exit 1; }
    local tree="$WORK/valgrind" log
    copy_tree "$tree"
    build "$tree" BPFAST_DEBUG=1
    check_import "$tree"
    log="$tree/valgrind.log"
    # A quick subset: valgrind makes Python ~50x slower.
    local vtests=(tests/test_kernels.py tests/test_small_gemm.py tests/test_tiny.py
                  tests/test_divergence.py tests/test_fuzz.py)
    [[ $# -gt 0 ]] && vtests=("$@")
    echo "== valgrind memcheck: pytest ${vtests[*]} (slow)"
    (cd "$tree" && PYTHONMALLOC=malloc PYTHONPATH="$tree/src" BPFAST_FUZZ_EXAMPLES=20 \
        valgrind --tool=memcheck --error-limit=no --num-callers=30 --track-origins=no \
                 --leak-check=no --read-var-info=no --log-file="$log" \
        "$PY" -m pytest -q -p no:cacheprovider -x "${vtests[@]}")
    # Errors are blocks "==pid== <kind>" ... blank line; keep those touching our extensions.
    local ours
    ours=$(awk '/^==[0-9]+== [A-Z]/ && /Invalid|uninitialised|Mismatched|overlap|free\(\)|Syscall param|unaddressable/ {blk=$0; inblk=1; next}
                inblk && /^==[0-9]+== *$/ {if (blk ~ /_kernels|_engine/) {print blk; n++}; inblk=0; next}
                inblk {blk=blk "\n" $0}
                END {exit 0}' "$log")
    if [[ -n "$ours" ]]; then
        echo "$ours"
        echo "memcheck: valgrind found errors in bpfast's extensions (full log: $log)" >&2
        BPFAST_MEMCHECK_KEEP=1; trap - EXIT
        exit 1
    fi
    grep -q "Command: $PY" "$log" && grep -q 'ERROR SUMMARY' "$log" \
        || { echo "memcheck: valgrind did not trace $PY (see $log)" >&2; exit 1; }
    echo "== valgrind: no error in _kernels/_engine (Python's own reports ignored): $(grep 'ERROR SUMMARY' "$log" | tail -1 | cut -d' ' -f2-)"
}

case "$MODE" in
    asan) run_asan ;;
    valgrind) run_valgrind "$@" ;;
    all) run_asan; run_valgrind "$@" ;;
esac
