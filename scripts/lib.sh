# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted `bash -c` scripts take their values as "$1"...
# Shared helpers for kafka-orm's infrastructure scripts (scripts/kafka, scripts/postgres,
# scripts/test). Source it; don't run it.
#
# Environment (all optional):
#   KAFKA_ORM_STATE        runtime state: data dirs, configs, logs, pid files
#                          (default: <repo>/target/infra, gitignored)
#   KAFKA_ORM_INFRA_HOME   download cache shared by all checkouts (default: ~/.cache/kafka-orm)

if [[ -n "${_KAFKA_ORM_LIB_SOURCED:-}" ]]; then
    return 0
fi
_KAFKA_ORM_LIB_SOURCED=1

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_ORM_STATE="${KAFKA_ORM_STATE:-$REPO_ROOT/target/infra}"
KAFKA_ORM_INFRA_HOME="${KAFKA_ORM_INFRA_HOME:-${HOME:-/root}/.cache/kafka-orm}"
export KAFKA_ORM_STATE KAFKA_ORM_INFRA_HOME

# Name shown in log lines: the calling script's name.
LOG_NAME="${LOG_NAME:-$(basename "$0")}"

# All diagnostics go to stderr, so that stdout stays clean for `env` output.
log() {
    printf '[%s %s] %s\n' "$LOG_NAME" "$(date +%H:%M:%S)" "$*" >&2
}

warn() {
    log "warning: $*"
}

die() {
    log "error: $*"
    exit 1
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# Milliseconds since the epoch (GNU date).
now_ms() {
    date +%s%3N
}

# Prints "<seconds>.<tenths>s" elapsed since the given now_ms timestamp.
elapsed_since() {
    local start_ms="$1" d
    d=$(($(now_ms) - start_ms))
    printf '%d.%01ds' $((d / 1000)) $(((d % 1000) / 100))
}

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND [ARGS...]
# Runs COMMAND every 0.25s until it succeeds; returns 1 after TIMEOUT_SECONDS.
wait_for() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$(($(now_ms) + timeout * 1000))
    until "$@" >/dev/null 2>&1; do
        if (($(now_ms) >= deadline)); then
            log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.25
    done
}

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() {
    local host="$1" port="$2"
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# pid_matches PID PATTERN: the process is alive and its command line contains PATTERN
# (guards against a stale pid file whose pid was reused by an unrelated process).
pid_matches() {
    local pid="$1" pattern="$2" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$pattern"* ]]
}

# read_pid FILE: prints the pid stored in FILE (nothing if absent or garbage).
read_pid() {
    local f="$1" pid=""
    if [[ -r "$f" ]]; then
        read -r pid <"$f" 2>/dev/null || true
    fi
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# terminate PID TIMEOUT_SECONDS: SIGTERM, wait, then SIGKILL. Returns once it is gone.
terminate() {
    local pid="$1" timeout="$2"
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_for "$timeout" "pid $pid to exit after SIGTERM" bash -c '! kill -0 "$1"' _ "$pid"; then
        warn "pid $pid ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 10 "pid $pid to exit after SIGKILL" bash -c '! kill -0 "$1"' _ "$pid" || true
    fi
}

# with_lock FILE: take an exclusive lock (fd 9) for the rest of the calling script, so two
# concurrent `start`s (two terminals, two test runs) don't race on the same state dir.
with_lock() {
    local f="$1"
    mkdir -p "$(dirname "$f")"
    exec 9>"$f"
    if ! flock -w 600 9; then
        die "could not lock $f within 600s (another start/stop still running?)"
    fi
}

# apt_install PKG...: installs the Debian packages that are missing (root only, no prompts).
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing Debian packages: ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        have sudo || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo -n)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    "${apt[@]}" update >&2 || die "apt-get update failed"
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >&2 ||
        die "apt-get install ${missing[*]} failed"
}

# ensure_build_deps: what building the workspace needs besides Rust itself. rdkafka-sys
# compiles librdkafka from source (its configure script + make, a C/C++ compiler) and links
# zlib (the `libz` feature) and OpenSSL (the `ssl` feature: TLS and SASL), both found with
# pkg-config. Installs only what is missing.
ensure_build_deps() {
    have cargo || die "cargo not found on PATH; install the Rust toolchain named in rust-toolchain.toml"
    apt_install build-essential pkg-config zlib1g-dev libssl-dev
}
