# Shell helpers shared by the launchers (sourced, not run). Set LAUNCHER (the script's name,
# for messages) and DRY_RUN (1: print commands instead of running them) before using them.
# shellcheck shell=bash

die() { echo "$LAUNCHER: $*" >&2; exit 2; }
log() { echo "$LAUNCHER: $*" >&2; }

quote() {  # the arguments as one shell-quoted line (`--flag=value` keeps `--flag=` outside quotes)
  local out="" a pre val
  for a in "$@"; do
    pre=""
    val=$a
    if [[ $a =~ ^(--[A-Za-z0-9-]+=)(.*)$ ]]; then pre=${BASH_REMATCH[1]}; val=${BASH_REMATCH[2]}; fi
    if [[ $val =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=" $pre$val"; else out+=" $pre'${val//\'/\'\\\'\'}'"; fi
  done
  printf '%s\n' "${out# }"
}

x() {  # run a command, or print it with --dry-run
  if [ "${DRY_RUN:-0}" = 1 ]; then quote "$@"; else "$@"; fi
}

tee_prefixed() {  # tee_prefixed PREFIX FILE: stdin appended to FILE and to stdout with PREFIX, line by line
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line" >&3
    printf '%s%s\n' "$1" "$line"
  done 3>>"$2"
}

wait_first_failure() {  # wait for every pid in PIDS; on the first nonzero exit, set FAILED to its index and return its code
  local i rc done_n=0 n=${#PIDS[@]}
  local -A exited=()
  while [ "$done_n" -lt "$n" ]; do
    wait -n 2>/dev/null || true
    for ((i = 0; i < n; i++)); do
      [ -z "${exited[$i]:-}" ] || continue
      kill -0 "${PIDS[i]}" 2>/dev/null && continue
      rc=0
      wait "${PIDS[i]}" 2>/dev/null || rc=$?
      exited[$i]=$rc
      done_n=$((done_n + 1))
      # shellcheck disable=SC2034  # FAILED is read by the launcher that sources this file
      if [ "$rc" != 0 ]; then FAILED=$i; return "$rc"; fi
    done
  done
  return 0
}
