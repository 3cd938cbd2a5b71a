#!/usr/bin/env bash
# Run N cooperating processes on this machine, as a multi-host job would (CPU stand-in devices).
set -euo pipefail
LAUNCHER=local.sh
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'EOF'
usage: launch/local.sh N [options] [--] CMD [ARG ...]

Start N processes of CMD on 127.0.0.1, each with M simulated CPU devices, wired together
through JAX's distributed runtime (coordinator 127.0.0.1:PORT, CPU collectives via gloo).

  launch/local.sh 2 -- f2jax train --config configs/demo.yaml --run-dir runs/local2 mesh.fsdp=4
  launch/local.sh 4 --devices-per-process 2 -- .venv/bin/python my_script.py

options:
  --devices-per-process M  CPU devices per process (XLA_FLAGS=--xla_force_host_platform_device_count=M;
                           default 1)
  --port P                 coordinator port on 127.0.0.1 (default: a free port)
  --log-dir DIR            one log per process, DIR/process-<i>.log
                           (default logs/local-<timestamp>)
  --grace S                seconds between SIGTERM and SIGKILL when stopping processes (default 5)
  --dry-run                print each process's environment and command line, run nothing
  -h, --help               this text

Every process gets F2JAX_COORDINATOR=127.0.0.1:PORT, F2JAX_NUM_PROCESSES=N, F2JAX_PROCESS_ID=i,
JAX_PLATFORMS=cpu, JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo and XLA_FLAGS with the device count.
When CMD is `f2jax train ...` (any path ending in f2jax, or `python -m f2jax.cli train ...`),
`--distributed --coordinator 127.0.0.1:PORT --num-processes N --process-id i` is inserted
right after `train`.

Output of process i goes to its log file and to the console prefixed with `[p<i>] `. When a
process exits non-zero the others are stopped (SIGTERM to their process groups, SIGKILL after
the grace period) and the script exits with that process's exit code; Ctrl-C stops them all.
EOF
}

free_port() {
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
      return
    fi
  done
  echo $(( 20000 + RANDOM % 20000 ))
}

[ $# -gt 0 ] || { usage >&2; exit 2; }
case $1 in -h|--help) usage; exit 0 ;; esac
NPROC=$1
shift
[[ $NPROC =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$NPROC'"
DEVICES=1
PORT=""
LOG_DIR=""
GRACE=5
DRY_RUN=0
while [ $# -gt 0 ]; do
  case $1 in
    --devices-per-process) DEVICES=${2:?--devices-per-process needs a value}; shift 2 ;;
    --devices-per-process=*) DEVICES=${1#*=}; shift ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --log-dir) LOG_DIR=${2:?--log-dir needs a value}; shift 2 ;;
    --log-dir=*) LOG_DIR=${1#*=}; shift ;;
    --grace) GRACE=${2:?--grace needs a value}; shift 2 ;;
    --grace=*) GRACE=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see -h)" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || die "no command given (see -h)"
[[ $DEVICES =~ ^[1-9][0-9]*$ ]] || die "--devices-per-process must be a positive integer"
[[ $GRACE =~ ^[0-9]+$ ]] || die "--grace must be a whole number of seconds"
[ -n "$PORT" ] || PORT=$(free_port)
[[ $PORT =~ ^[0-9]+$ ]] || die "--port must be a number"
COORD=127.0.0.1:$PORT
[ -n "$LOG_DIR" ] || LOG_DIR=logs/local-$(date +%Y%m%d-%H%M%S)

# Where `train` follows f2jax (f2jax, .venv/bin/f2jax, python -m f2jax.cli), the flags go after it.
CMD=("$@")
TRAIN_AT=-1
for ((k = 0; k < ${#CMD[@]}; k++)); do
  case ${CMD[k]} in
    f2jax|*/f2jax|f2jax.cli)
      j=$((k + 1))
      while [ "$j" -lt "${#CMD[@]}" ] && [[ ${CMD[j]} == -* ]]; do j=$((j + 1)); done  # e.g. --debug
      if [ "$j" -lt "${#CMD[@]}" ] && [ "${CMD[j]}" = train ]; then TRAIN_AT=$j; fi
      break ;;
  esac
done

command_for() {  # command_for I: sets PROC_CMD to the command line of process I
  local i=$1
  if [ "$TRAIN_AT" -ge 0 ]; then
    PROC_CMD=("${CMD[@]:0:TRAIN_AT+1}" --distributed --coordinator "$COORD" --num-processes "$NPROC"
              --process-id "$i" "${CMD[@]:TRAIN_AT+1}")
  else
    PROC_CMD=("${CMD[@]}")
  fi
}

XLA_FLAGS_OUT=""
for f in ${XLA_FLAGS:-}; do  # keep the caller's XLA flags, replace the device count
  case $f in --xla_force_host_platform_device_count=*) ;; *) XLA_FLAGS_OUT+="$f " ;; esac
done
XLA_FLAGS_OUT+="--xla_force_host_platform_device_count=$DEVICES"
export XLA_FLAGS=$XLA_FLAGS_OUT JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo
export F2JAX_COORDINATOR=$COORD F2JAX_NUM_PROCESSES=$NPROC
export PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1}

if [ "$DRY_RUN" = 1 ]; then
  for ((i = 0; i < NPROC; i++)); do
    command_for "$i"
    quote env "XLA_FLAGS=$XLA_FLAGS" JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
      "F2JAX_COORDINATOR=$COORD" "F2JAX_NUM_PROCESSES=$NPROC" "F2JAX_PROCESS_ID=$i" "${PROC_CMD[@]}"
  done
  exit 0
fi

mkdir -p "$LOG_DIR"
echo "local.sh: $NPROC processes x $DEVICES CPU devices, coordinator $COORD, logs in $LOG_DIR/" >&2

# Job control: every background job (one process and its output filter) is its own process
# group, so stopping a process stops everything it started.
set -m
PIDS=()
for ((i = 0; i < NPROC; i++)); do
  command_for "$i"
  log=$LOG_DIR/process-$i.log
  : >"$log"
  (
    trap - INT TERM
    F2JAX_PROCESS_ID=$i "${PROC_CMD[@]}" </dev/null 2>&1 | tee_prefixed "[p$i] " "$log"
    exit "${PIPESTATUS[0]}"
  ) &
  PIDS[i]=$!
done

stop_all() {  # SIGTERM every running process group, SIGKILL what is left after the grace period
  local pid waited=0 alive
  set +m  # no "Terminated" job notices
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  while :; do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    if [ "$waited" -ge $((GRACE * 10)) ]; then
      for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

on_signal() {
  trap '' INT TERM
  echo "local.sh: $1, stopping all processes" >&2
  stop_all
  exit "$2"
}
trap 'on_signal interrupted 130' INT
trap 'on_signal terminated 143' TERM

rc=0
wait_first_failure || rc=$?
if [ "$rc" != 0 ]; then
  trap '' INT TERM
  log "process $FAILED exited with code $rc; stopping the others"
  stop_all
  exit "$rc"
fi
echo "local.sh: all $NPROC processes finished" >&2
