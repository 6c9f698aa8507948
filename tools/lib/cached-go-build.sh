# Sourced (not run) by tools/promtool/build.sh and tools/luatest/build.sh: the parts every
# "build one Go binary once, cache it by a key" script shares. (tools/controlplane/build.sh has
# the same shape for four binaries with their own stamps and predates this file.)
#
# The caller sets, before calling these functions:
#   tool        short name for log lines ("promtool")
#   name        the binary's file name
#   dir, bin    the cache directory of this key and its bin/ directory
#   stamp_line  the first line of ${dir}/stamp when the build is complete (recipe and key)
#
# Contract kept by every script: progress on stderr, the LAST line of stdout is the bin
# directory; `--check` builds nothing and exits 3 when something is missing; the binary is
# built in a temporary directory and renamed into bin/ only when complete, then the stamp is
# written, so an interrupted build is never mistaken for a finished one.

# check_only=1 for `--check`; usage error (exit 2) for anything else.
parse_build_args() {
  check_only=0
  case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *)
      echo "usage: $0 [--check]" >&2
      exit 2
      ;;
  esac
}

log() { echo "${tool}: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

cache_root="${SCP_OPERATOR_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/scp-operator}"

cached() {
  [[ -x "${bin}/${name}" && -f "${dir}/stamp" && "$(head -n 1 "${dir}/stamp")" == "${stamp_line}" ]]
}

# Print the bin directory and exit when the binary is built; with --check exit 3 when it is
# not. Otherwise take the key's lock (another build.sh may be building it right now: wait, then
# look again) and return, so the caller builds.
serve_cached_or_lock() {
  if cached; then
    echo "${bin}"
    exit 0
  fi
  if ((check_only)); then
    log "not built yet: ${name} (in ${bin}; run $0)"
    exit 3
  fi
  mkdir -p "${dir}"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${dir}/.lock"
    flock 9
  fi
  if cached; then
    echo "${bin}"
    exit 0
  fi
}

# Go for a reproducible host build (module proxy, no cgo, no toolchain download), and a
# temporary directory ${tmp} removed on exit. $1: what to say when Go is missing.
prepare_go_build() {
  command -v go >/dev/null 2>&1 || die "Go is needed to build ${name}; $1"
  export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
  unset GOOS GOARCH # always build for the host
  tmp="$(mktemp -d "${dir}/.tmp.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
}

# Move ${tmp}/${name} into bin/, write the stamp, print the bin directory.
install_built() {
  mkdir -p "${bin}"
  mv -f "${tmp}/${name}" "${bin}/${name}"
  {
    echo "${stamp_line}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "go=$(go env GOVERSION)"
  } >"${dir}/stamp.tmp"
  mv -f "${dir}/stamp.tmp" "${dir}/stamp"
  echo "${bin}"
}
