#!/usr/bin/env bash
# Multi-node GPU training: one `f2jax train --distributed` process per node, driving all of the
# node's GPUs. Under SLURM (sbatch + srun) or over plain ssh. See usage() or `launch/gpu.sh -h`.
set -euo pipefail
LAUNCHER=gpu.sh
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'EOF'
usage: launch/gpu.sh [options] slurm CONFIG RUN_DIR [key=value ...]
       launch/gpu.sh [options] --hosts H1,H2,... ssh CONFIG RUN_DIR [key=value ...]

slurm   write a batch script (LOG_DIR/<run>.sbatch) and submit it with sbatch: one task per node
        (srun --ntasks-per-node=1), each driving its node's GPUs; jax.distributed.initialize()
        reads the coordinator, process count and process id from SLURM's environment
ssh     process i on host i (--hosts), coordinator HOST1:PORT; each process gets
        `--distributed --coordinator HOST1:PORT --num-processes N --process-id i` and the same as
        F2JAX_COORDINATOR / F2JAX_NUM_PROCESSES / F2JAX_PROCESS_ID; host i's output goes to
        LOG_DIR/host-<i>.log and to the console prefixed `[h<i>] `; when one host's process fails
        the others are stopped (SIGTERM, SIGKILL after --grace) and its exit code is returned

options:
  --nodes N               slurm: nodes (default 1)
  --gpus-per-node G       slurm: GPUs per node (default 8)
  --partition P, --account A, --time T, --job-name J
                          slurm: passed to #SBATCH lines
  --sbatch-arg ARG        slurm: another #SBATCH line, repeatable (e.g. --sbatch-arg=--requeue)
  --hosts H1,H2,...       ssh: one process per host, host 1 is the coordinator ([user@]host)
  --port P                ssh: coordinator port (default 12355)
  --workdir DIR           the directory the processes run in, on every node (default: this
                          checkout's absolute path; CONFIG and relative paths resolve there)
  --venv DIR              venv on the nodes, relative to --workdir or absolute (default .venv)
  --setup                 first `pip install 'f2jax[cuda]'` into --venv on every node (slurm:
                          once, from the batch script; needs a shared file system). Nothing is
                          installed without it
  --setup-spec SPEC       what --setup installs (default 'f2jax[cuda]'; e.g. '.[cuda]' for the checkout)
  --log-dir DIR           default logs/<run name>
  --grace S               seconds between SIGTERM and SIGKILL when stopping (default 30)
  --dry-run               print the commands (and the batch script) instead of running them
  -h, --help              this text

  launch/gpu.sh --nodes 4 --partition gpu --time 24:00:00 slurm configs/recipes/stage1_4b.yaml runs/stage1_4b
  launch/gpu.sh --hosts gpu1,gpu2 --setup ssh configs/recipes/stage1_4b.yaml /shared/runs/stage1_4b mesh.fsdp=16
EOF
}

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)

NODES=1
GPUS=8
PARTITION=""
ACCOUNT=""
TIME=""
JOB_NAME=""
SBATCH_ARGS=()
HOSTS=""
PORT=12355
WORKDIR=$REPO_ROOT
VENV=.venv
SETUP=0
SETUP_SPEC='f2jax[cuda]'
LOG_DIR=""
GRACE=30
DRY_RUN=0
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --setup) SETUP=1 ;;
    --*=*)
      opt=${1%%=*}
      set -- "$opt" "${1#*=}" "${@:2}"
      continue ;;
    --nodes|--gpus-per-node|--partition|--account|--time|--job-name|--sbatch-arg|--hosts|--port|--workdir|--venv|--setup-spec|--log-dir|--grace)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in
        --nodes) NODES=$2 ;; --gpus-per-node) GPUS=$2 ;; --partition) PARTITION=$2 ;;
        --account) ACCOUNT=$2 ;; --time) TIME=$2 ;; --job-name) JOB_NAME=$2 ;;
        --sbatch-arg) SBATCH_ARGS+=("$2") ;; --hosts) HOSTS=$2 ;; --port) PORT=$2 ;;
        --workdir) WORKDIR=$2 ;; --venv) VENV=$2 ;; --setup-spec) SETUP_SPEC=$2 ;;
        --log-dir) LOG_DIR=$2 ;; --grace) GRACE=$2 ;;
      esac
      shift ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) die "unknown option $1 (see -h)" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ ${#ARGS[@]} -ge 3 ] || { usage >&2; exit 2; }
MODE=${ARGS[0]}
CONFIG=${ARGS[1]}
RUN_DIR=${ARGS[2]}
OVERRIDES=("${ARGS[@]:3}")
case $MODE in slurm|ssh) ;; *) die "unknown mode '$MODE' (slurm or ssh; see -h)" ;; esac
for v in NODES GPUS PORT GRACE; do [[ ${!v} =~ ^[0-9]+$ ]] || die "${v,,} must be a whole number"; done
RUN=${RUN_DIR%/}
RUN=${RUN##*/}
LOG_DIR=${LOG_DIR:-logs/$RUN}
F2JAX=$VENV/bin/f2jax
SETUP_CMD="{ [ -x $(quote "$VENV")/bin/python ] || python3 -m venv $(quote "$VENV"); } && $(quote "$VENV")/bin/python -m pip install -q $(quote "$SETUP_SPEC")"
TRAIN_ARGS=(--config "$CONFIG" --run-dir "$RUN_DIR" "${OVERRIDES[@]}")

run_slurm() {
  local script=$LOG_DIR/$RUN.sbatch body a
  body="#!/usr/bin/env bash
#SBATCH --job-name=${JOB_NAME:-f2jax-$RUN}
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=$GPUS
#SBATCH --output=$LOG_DIR/slurm-%j.out
#SBATCH --signal=TERM@120"
  [ -z "$PARTITION" ] || body+=$'\n'"#SBATCH --partition=$PARTITION"
  [ -z "$ACCOUNT" ] || body+=$'\n'"#SBATCH --account=$ACCOUNT"
  [ -z "$TIME" ] || body+=$'\n'"#SBATCH --time=$TIME"
  for a in "${SBATCH_ARGS[@]}"; do body+=$'\n'"#SBATCH $a"; done
  body+="
# One task per node; each drives all of its node's GPUs. jax.distributed.initialize() takes the
# coordinator (first node), process count and id from SLURM. SIGTERM (preemption, --signal
# before the time limit) makes f2jax save the current step; resubmitting resumes from it.
set -euo pipefail
cd $(quote "$WORKDIR")"
  [ "$SETUP" = 0 ] || body+=$'\n'"$SETUP_CMD"
  body+="
export PYTHONUNBUFFERED=1
$(quote srun --kill-on-bad-exit=1 --label "$F2JAX" train --distributed "${TRAIN_ARGS[@]}")"
  if [ "$DRY_RUN" = 1 ]; then
    printf "cat > %s <<'EOF'\n%s\nEOF\n" "$(quote "$script")" "$body"
  else
    mkdir -p "$LOG_DIR"
    printf '%s\n' "$body" >"$script"
    log "batch script $script"
  fi
  x sbatch "$script"
}

pidfile() { echo "/tmp/f2jax-$RUN-$1.pid"; }

stop_remote() {  # stop_remote HOST I: SIGTERM the process on HOST, SIGKILL after the grace period
  local f
  f=$(pidfile "$2")
  x ssh -o BatchMode=yes "$1" "pid=\$(cat $f 2>/dev/null) || exit 0; kill -TERM \$pid 2>/dev/null; for _ in \$(seq $GRACE); do kill -0 \$pid 2>/dev/null || exit 0; sleep 1; done; kill -KILL \$pid 2>/dev/null; rm -f $f"
}

run_ssh() {
  [ -n "$HOSTS" ] || die "ssh mode needs --hosts H1,H2,..."
  local hosts=() n i coord cmds=()
  IFS=, read -ra hosts <<<"$HOSTS"
  n=${#hosts[@]}
  coord=${hosts[0]##*@}:$PORT
  if [ "$SETUP" = 1 ]; then
    for ((i = 0; i < n; i++)); do x ssh -o BatchMode=yes "${hosts[i]}" "cd $(quote "$WORKDIR") && $SETUP_CMD"; done
  fi
  for ((i = 0; i < n; i++)); do
    cmds[i]="cd $(quote "$WORKDIR") && echo \$\$ > $(pidfile "$i") && exec env PYTHONUNBUFFERED=1 F2JAX_COORDINATOR=$coord F2JAX_NUM_PROCESSES=$n F2JAX_PROCESS_ID=$i $(quote "$F2JAX" train --distributed --coordinator "$coord" --num-processes "$n" --process-id "$i" "${TRAIN_ARGS[@]}")"
  done
  if [ "$DRY_RUN" = 1 ]; then
    for ((i = 0; i < n; i++)); do quote ssh -o BatchMode=yes "${hosts[i]}" "${cmds[i]}"; done
    return 0
  fi
  mkdir -p "$LOG_DIR"
  log "$n processes, coordinator $coord, logs in $LOG_DIR/host-<i>.log"
  set -m  # one process group per host's ssh
  PIDS=()
  for ((i = 0; i < n; i++)); do
    printf '=== %s: %s on %s\n' "$(date -u +%FT%TZ)" "$RUN" "${hosts[i]}" >>"$LOG_DIR/host-$i.log"
    (
      trap - INT TERM
      ssh -o BatchMode=yes "${hosts[i]}" "${cmds[i]}" </dev/null 2>&1 | tee_prefixed "[h$i] " "$LOG_DIR/host-$i.log"
      exit "${PIPESTATUS[0]}"
    ) &
    PIDS[i]=$!
  done
  set +m
  stop_all() {
    local j pid
    for ((j = 0; j < n; j++)); do stop_remote "${hosts[j]}" "$j" >/dev/null 2>&1 & done
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap 'trap "" INT TERM; log "interrupted; stopping all hosts"; stop_all; exit 130' INT
  trap 'trap "" INT TERM; log "terminated; stopping all hosts"; stop_all; exit 143' TERM
  local rc=0
  wait_first_failure || rc=$?
  if [ "$rc" != 0 ]; then
    trap '' INT TERM
    log "host $FAILED (${hosts[FAILED]}) exited with code $rc; stopping the others"
    stop_all
    return "$rc"
  fi
  log "all $n processes finished"
}

case $MODE in
  slurm) run_slurm ;;
  ssh) run_ssh ;;
esac
