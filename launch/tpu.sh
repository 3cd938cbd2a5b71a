#!/usr/bin/env bash
# Cloud TPU VM slices: create (queued resource), ship this checkout, run `f2jax train` on every
# worker, retry after preemption. See usage() or `launch/tpu.sh -h`.
set -euo pipefail
LAUNCHER=tpu.sh
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'EOF'
usage: launch/tpu.sh [options] COMMAND [args]

commands:
  create                      request the slice (queued resource) and wait until it is ACTIVE
  ship                        build a wheel of this checkout, copy it to every worker and install
                              f2jax[tpu] from it into a venv there (--venv)
  run CONFIG RUN_DIR [k=v ...]
                              stop stale TPU processes, copy CONFIG (and the YAML files beside it,
                              for `include:`), run `f2jax train --distributed` on every worker;
                              worker i's output goes to LOG_DIR/worker-<i>.log and the console
  train CONFIG RUN_DIR [k=v ...]
                              create + ship + run; with --retries N, after a preemption or a failed
                              worker the slice is recreated (if it is no longer ACTIVE) and the run
                              is started again; it resumes from the newest checkpoint in RUN_DIR
  logs RUN                    follow a run's log on a worker (--worker, default 0); RUN is the run
                              name or RUN_DIR
  stop                        stop f2jax on every worker (SIGTERM, which checkpoints; SIGKILL after
                              --grace seconds) and remove the libtpu lock file
  delete                      delete the queued resource and its TPU VMs

options (anywhere before `--`; the environment variable in brackets is the default):
  --name NAME                 queued resource and TPU VM name [TPU_NAME]
  --zone ZONE                 e.g. us-east5-a [ZONE]
  --project PROJECT           [PROJECT, else gcloud's configured project]
  --type TYPE                 accelerator type: v4-32, v5litepod-16, v5p-128, v6e-16 ... [TPU_TYPE]
  --runtime-version V         default from the type: v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
                              v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
  --spot | --reserved | --best-effort
                              capacity (default on-demand; --best-effort uses `gcloud alpha`)
  --recreate                  create: delete and recreate a FAILED/SUSPENDED queued resource
  --timeout S                 create: give up waiting for ACTIVE after S seconds (default 7200)
  --poll S                    create: seconds between state checks (default 30)
  --retries N                 train: rerun up to N times after a failure or preemption (default 0)
  --workers N                 number of TPU VM workers (default: asked from gcloud; with --dry-run
                              derived from --type)
  --worker I|all              logs: which worker (default 0)
  --venv DIR                  venv on the workers (default ~/f2jax-venv)
  --wheel-dir DIR             ship: where the wheel is built (default dist/ship in this checkout;
                              emptied first)
  --log-dir DIR               local worker logs (default logs/<run name>)
  --grace S                   seconds between SIGTERM and SIGKILL when stopping (default 30)
  --dry-run                   print every command (gcloud, the wheel build) instead of running it
  -h, --help                  this text

RUN_DIR must be storage every worker sees (gs://bucket/path); so must the config's data.path and
model.path (override them with key=value if the config holds local paths): each worker copies a
gs:// model and data once into F2JAX_STAGE_DIR (default ~/.cache/f2jax/staged) and reuses the copy
on reruns (docs/scaling.md, "Buckets"). Exit codes: a failed worker's exit code; 75 when the
run stopped on a preemption notice (rerun to resume); 2 for usage errors.

  launch/tpu.sh --name f2-v5p --zone us-east5-a --type v5p-128 --spot --retries 5 \
      train configs/recipes/stage1_8b.yaml gs://my-bucket/runs/stage1_8b model.path=gs://my-bucket/Qwen3-8B \
      data.path=gs://my-bucket/data/stage1
EOF
}

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)

# ---- options ----
NAME=${TPU_NAME:-}
ZONE=${ZONE:-}
PROJECT=${PROJECT:-}
TYPE=${TPU_TYPE:-}
RUNTIME=""
CAPACITY=""
RECREATE=0
TIMEOUT=7200
POLL=30
RETRIES=0
WORKERS=""
WORKER=0
# shellcheck disable=SC2088  # expanded by the workers' shell
VENV="~/f2jax-venv"
LOG_DIR=""
WHEEL_DIR=$REPO_ROOT/dist/ship
GRACE=30
DRY_RUN=0
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --spot|--reserved|--best-effort) CAPACITY=$1 ;;
    --recreate) RECREATE=1 ;;
    --name|--zone|--project|--type|--runtime-version|--timeout|--poll|--retries|--workers|--worker|--venv|--wheel-dir|--log-dir|--grace)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in
        --name) NAME=$2 ;; --zone) ZONE=$2 ;; --project) PROJECT=$2 ;; --type) TYPE=$2 ;;
        --runtime-version) RUNTIME=$2 ;; --timeout) TIMEOUT=$2 ;; --poll) POLL=$2 ;;
        --retries) RETRIES=$2 ;; --workers) WORKERS=$2 ;; --worker) WORKER=$2 ;; --venv) VENV=$2 ;;
        --wheel-dir) WHEEL_DIR=$2 ;; --log-dir) LOG_DIR=$2 ;; --grace) GRACE=$2 ;;
      esac
      shift ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) die "unknown option $1 (see -h)" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ ${#ARGS[@]} -gt 0 ] || { usage >&2; exit 2; }
SUB=${ARGS[0]}
ARGS=("${ARGS[@]:1}")
for v in TIMEOUT POLL RETRIES GRACE; do [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} must be a whole number"; done
[ -z "$WORKERS" ] || [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
[[ $WORKER =~ ^([0-9]+|all)$ ]] || die "--worker must be a number or 'all'"
[[ $VENV =~ ^[A-Za-z0-9_./~-]+$ ]] || die "--venv must be a plain path (letters, digits, _ . / ~ -)"

case $SUB in
  create|ship|run|train|logs|stop|delete) ;;
  *) die "unknown command '$SUB' (see -h)" ;;
esac
[ -n "$NAME" ] || die "set --name or TPU_NAME"
[ -n "$ZONE" ] || die "set --zone or ZONE"
LOC=(--zone="$ZONE")
[ -z "$PROJECT" ] || LOC+=(--project="$PROJECT")

runtime_for() {  # default runtime version of an accelerator type
  case $1 in
    v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) return 1 ;;
  esac
}

workers_for() {  # TPU VM hosts of an accelerator type (v4/v5p count TensorCores, 2 per chip)
  local n=${1##*-}
  [[ $n =~ ^[0-9]+$ ]] || return 1
  case $1 in
    v4-*|v5p-*) echo $(( n <= 8 ? 1 : n / 8 )) ;;
    v5litepod-*|v5e-*|v6e-*) echo $(( n <= 8 ? 1 : n / 4 )) ;;
    *) return 1 ;;
  esac
}

# ---- running commands ----
exec 4>&1  # the real stdout, for commands printed inside $(...)

GCLOUD_QR=(gcloud compute tpus queued-resources)
GCLOUD_VM=(gcloud compute tpus tpu-vm)

qr_state() {  # qr_state DRY_ANSWER: the queued resource's state, NOT_FOUND if there is none
  local cmd=("${GCLOUD_QR[@]}" describe "$NAME" "${LOC[@]}" --format='value(state.state)') out err rc=0
  if [ "$DRY_RUN" = 1 ]; then quote "${cmd[@]}"; echo "$1" >&3; return; fi
  err=$(mktemp)
  out=$("${cmd[@]}" 2>"$err") || rc=$?
  if [ "$rc" != 0 ]; then
    if grep -qiE 'NOT_FOUND|not found' "$err"; then out=NOT_FOUND; else cat "$err" >&2; rm -f "$err"; return "$rc"; fi
  fi
  rm -f "$err"
  echo "${out:-UNKNOWN}" >&3
}
state_now() { qr_state "$1" 3>&1 >&4; }  # stdout: the state; printed commands go to the real stdout (fd 4)

delete_qr() {
  x "${GCLOUD_QR[@]}" delete "$NAME" "${LOC[@]}" --force --quiet
}

cmd_create() {
  local state rt waited=0 new=0
  state=$(state_now NOT_FOUND)
  case $state in
    ACTIVE) log "$NAME is ACTIVE; using it"; return 0 ;;
    NOT_FOUND) new=1 ;;
    FAILED|SUSPENDED|SUSPENDING)
      if [ "$RECREATE" = 1 ]; then
        log "$NAME is $state; deleting and recreating it"
        delete_qr
        new=1
      else
        log "$NAME is $state; delete it (launch/tpu.sh delete) or pass --recreate"
        return 1
      fi ;;
    *) log "$NAME exists ($state); waiting for it" ;;
  esac
  if [ "$new" = 1 ]; then
    [ -n "$TYPE" ] || die "create needs --type (or TPU_TYPE), e.g. v5litepod-16"
    rt=$RUNTIME
    [ -n "$rt" ] || rt=$(runtime_for "$TYPE") || die "no default runtime version for '$TYPE'; pass --runtime-version"
    local create=("${GCLOUD_QR[@]}" create "$NAME" --node-id="$NAME" "${LOC[@]}" --accelerator-type="$TYPE"
                  --runtime-version="$rt")
    [ "$CAPACITY" != --best-effort ] || create=(gcloud alpha "${create[@]:1}")
    [ -z "$CAPACITY" ] || create+=("$CAPACITY")
    x "${create[@]}"
  fi
  while :; do
    state=$(state_now ACTIVE)
    case $state in
      ACTIVE) log "$NAME is ACTIVE"; return 0 ;;
      FAILED|SUSPENDED|SUSPENDING|NOT_FOUND)
        log "$NAME is $state (inspect it: gcloud compute tpus queued-resources describe $NAME ${LOC[*]})"
        return 1 ;;
    esac
    if [ "$waited" -ge "$TIMEOUT" ]; then log "$NAME still $state after ${TIMEOUT}s; giving up"; return 1; fi
    log "$NAME is $state; waiting (${waited}s of ${TIMEOUT}s)"
    sleep "$POLL"
    waited=$((waited + POLL))
  done
}

ssh_all() {  # ssh_all COMMAND: run a shell command on every worker
  x "${GCLOUD_VM[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command="$1"
}

cmd_ship() {
  local py=${PYTHON:-python3} version wheel dist=$WHEEL_DIR
  [ -n "${PYTHON:-}" ] || [ ! -x "$REPO_ROOT/.venv/bin/python" ] || py=$REPO_ROOT/.venv/bin/python
  # The wheel is built from a clean copy of the working tree (tracked and untracked, not ignored,
  # files): an in-tree build would also pack stale modules left in build/.
  if [ "$DRY_RUN" = 1 ]; then
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml" | head -n 1)
    wheel=$dist/f2jax-$version-py3-none-any.whl
    log "(copy of the working tree in $dist/src)"
  else
    rm -rf "$dist"
    mkdir -p "$dist/src"
    if git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
        tar --null -T - -cf -) |
        tar -xf - -C "$dist/src"
    else
      tar -C "$REPO_ROOT" --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./runs --exclude=./logs \
        -cf - . | tar -xf - -C "$dist/src"
    fi
  fi
  x "$py" -m pip wheel --quiet --no-deps --wheel-dir "$dist" "$dist/src"
  if [ "$DRY_RUN" != 1 ]; then
    wheel=$(ls "$dist"/f2jax-*.whl)
  fi
  local base
  base=$(basename "$wheel")
  x "${GCLOUD_VM[@]}" scp "$wheel" "$NAME:/tmp/$base" --worker=all "${LOC[@]}"
  # f2jax needs Python >= 3.11; older TPU VM images get one through uv.
  ssh_all "set -e; if [ ! -x $VENV/bin/python ]; then if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then python3 -m venv $VENV; else python3 -m pip install -q --user uv && ~/.local/bin/uv venv -q --seed -p 3.11 $VENV; fi; fi; $VENV/bin/python -m pip install -q -U pip; $VENV/bin/python -m pip install -q '/tmp/${base}[tpu]'; $VENV/bin/python -m pip install -q --no-deps --force-reinstall /tmp/$base"
}

# Processes holding the TPU: SIGTERM (f2jax checkpoints and exits), SIGKILL after the grace period.
STOP_TPU="pids=\$(sudo lsof -t /dev/accel* /dev/vfio/* 2>/dev/null | sort -u || true); if [ -n \"\$pids\" ]; then sudo kill -TERM \$pids 2>/dev/null || true; for _ in \$(seq $GRACE); do alive=0; for p in \$pids; do sudo kill -0 \$p 2>/dev/null && alive=1; done; [ \$alive = 0 ] && break; sleep 1; done; sudo kill -KILL \$pids 2>/dev/null || true; fi; sudo rm -f /tmp/libtpu_lockfile"

run_name() { local r=${1%/}; echo "${r##*/}"; }

num_workers() {
  if [ -n "$WORKERS" ]; then echo "$WORKERS"; return; fi
  local cmd=("${GCLOUD_VM[@]}" describe "$NAME" "${LOC[@]}" --format='value(networkEndpoints[].ipAddress)') ips
  if [ "$DRY_RUN" = 1 ]; then
    quote "${cmd[@]}" >&4
    workers_for "$TYPE" || die "--dry-run needs --workers N or a known --type"
    return
  fi
  ips=$("${cmd[@]}") || return 1
  local hosts=()
  read -ra hosts <<<"${ips//;/ }"
  [ ${#hosts[@]} -gt 0 ] || { log "no workers found for $NAME"; return 1; }
  echo ${#hosts[@]}
}

cmd_run() {
  [ ${#ARGS[@]} -ge 2 ] || die "usage: launch/tpu.sh [options] run CONFIG RUN_DIR [key=value ...]"
  local config=${ARGS[0]} run_dir=${ARGS[1]} run n i
  local overrides=("${ARGS[@]:2}")
  [ -f "$config" ] || die "config not found: $config"
  [[ $run_dir == gs://* ]] || log "warning: RUN_DIR $run_dir is not a gs:// URL; every worker must see the same directory"
  run=$(run_name "$run_dir")
  local dir=${LOG_DIR:-logs/$run} remote=/tmp/f2jax-$run
  local cfg_dir yamls=()
  cfg_dir=$(dirname "$config")
  for f in "$cfg_dir"/*.yaml "$cfg_dir"/*.yml; do
    if [ -f "$f" ]; then yamls+=("$f"); fi
  done

  ssh_all "$STOP_TPU; rm -rf $(quote "$remote"); mkdir -p $(quote "$remote") ~/f2jax-logs"
  x "${GCLOUD_VM[@]}" scp "${yamls[@]}" "$NAME:$remote/" --worker=all "${LOC[@]}"
  n=$(num_workers)
  local train
  train="set -o pipefail; cd ~ && PYTHONUNBUFFERED=1 $VENV/bin/f2jax train --distributed $(quote --config "$remote/$(basename "$config")" --run-dir "$run_dir" "${overrides[@]}") 2>&1 | tee -a ~/f2jax-logs/$(quote "$run").log"
  if [ "$DRY_RUN" = 1 ]; then
    for ((i = 0; i < n; i++)); do
      quote "${GCLOUD_VM[@]}" ssh "$NAME" "${LOC[@]}" --worker="$i" --command="$train"
    done
    return 0
  fi

  mkdir -p "$dir"
  local starts=()
  for ((i = 0; i < n; i++)); do
    touch "$dir/worker-$i.log"
    starts[i]=$(wc -l <"$dir/worker-$i.log")
    printf '=== %s: %s run on worker %d\n' "$(date -u +%FT%TZ)" "$run" "$i" >>"$dir/worker-$i.log"
  done
  log "$n workers; logs in $dir/worker-<i>.log"
  set -m  # one process group per worker's ssh
  PIDS=()
  for ((i = 0; i < n; i++)); do
    (
      trap - INT TERM
      "${GCLOUD_VM[@]}" ssh "$NAME" "${LOC[@]}" --worker="$i" --command="$train" </dev/null 2>&1 |
        tee_prefixed "[w$i] " "$dir/worker-$i.log"
      exit "${PIPESTATUS[0]}"
    ) &
    PIDS[i]=$!
  done
  set +m
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM
  local rc=0
  wait_first_failure || rc=$?
  if [ "$rc" != 0 ]; then
    log "worker $FAILED exited with code $rc; stopping the others"
    stop_workers
    trap - INT TERM
    return "$rc"
  fi
  trap - INT TERM
  for ((i = 0; i < n; i++)); do
    if tail -n +"$((starts[i] + 1))" "$dir/worker-$i.log" | grep -q '^preempted: '; then
      log "preempted: a checkpoint was saved in $run_dir; rerun to resume"
      return 75
    fi
  done
  log "run $run finished on all $n workers"
  return 0
}

stop_workers() {  # local ssh process groups, then f2jax on the workers
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  ssh_all "$STOP_TPU" || true
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

on_signal() {
  trap '' INT TERM
  log "interrupted; stopping the workers"
  stop_workers
  exit "$1"
}

cmd_logs() {
  [ ${#ARGS[@]} -ge 1 ] || die "usage: launch/tpu.sh [options] logs RUN"
  local run
  run=$(run_name "${ARGS[0]}")
  x "${GCLOUD_VM[@]}" ssh "$NAME" "${LOC[@]}" --worker="$WORKER" --command="tail -n 200 -F ~/f2jax-logs/$(quote "$run").log"
}

cmd_train() {
  [ ${#ARGS[@]} -ge 2 ] || die "usage: launch/tpu.sh [options] train CONFIG RUN_DIR [key=value ...]"
  local attempt=0 rc state
  cmd_create
  cmd_ship
  while :; do
    rc=0
    cmd_run || rc=$?
    [ "$rc" != 0 ] || return 0
    if [ "$rc" = 2 ]; then log "f2jax rejected its input (exit code 2); not retrying"; return 2; fi
    attempt=$((attempt + 1))
    if [ "$attempt" -gt "$RETRIES" ]; then log "giving up after $RETRIES retries (exit code $rc)"; return "$rc"; fi
    state=$(state_now ACTIVE)
    log "run stopped (exit code $rc), slice $state; retry $attempt of $RETRIES"
    if [ "$state" != ACTIVE ]; then
      if [ "$state" != NOT_FOUND ]; then delete_qr; fi
      cmd_create
      cmd_ship
    fi
  done
}

case $SUB in
  create) cmd_create ;;
  ship) cmd_ship ;;
  run) cmd_run ;;
  train) cmd_train ;;
  logs) cmd_logs ;;
  stop) ssh_all "$STOP_TPU" ;;
  delete) delete_qr ;;
esac
