#!/usr/bin/env bash
# Build (once) and cache promtool, the Prometheus rule checker and rule unit-test runner used by
# tests/packaging/test_prometheus_rules.py to check the chart's PrometheusRule.
#
# The version is the github.com/prometheus/prometheus module version pinned in the committed
# go.mod next to this script (Prometheus tags its Go module v0.<major*100+minor>.<patch>, so
# v0.316.0 is Prometheus 3.16.0). promtool is built from the Go module proxy with
# CGO_ENABLED=0, GOTOOLCHAIN=local and -trimpath, with the release version stamped in, into
#
#   ${SCP_OPERATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scp-operator}/promtool-<v>/bin/promtool
#
# The binary is built in a temporary directory and renamed into bin/ only when complete, and a
# stamp file is written afterwards, so an interrupted build is never mistaken for a finished
# one. A second run only checks the stamp.
#
# A promtool you already have is used instead of being built: set TEST_ASSET_PROMTOOL to its
# path (the printed directory is then a directory with a symlink to it).
#
# Output: progress goes to stderr; the LAST line of stdout is the bin directory.
# Needs no input (fine under CI=true); Go is only needed when something must be built.
#
# Usage: build.sh [--check]
#   --check   build nothing: print the bin directory and exit 0 if promtool is there,
#             else say so on stderr and exit 3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tool=promtool
name=promtool
# shellcheck source=../lib/cached-go-build.sh
source "${here}/../lib/cached-go-build.sh"
parse_build_args "$@"
# Bump when the way promtool is built changes (flags, tags, ldflags) to invalidate caches.
recipe=1
module=github.com/prometheus/prometheus

version="$(awk -v m="${module}" '
  $1 == "require" && $2 == m { print $3; exit }
  $1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "${here}/go.mod")"
[[ -n "${version}" ]] || die "could not read the pinned ${module} version from ${here}/go.mod"

dir="${cache_root}/promtool-${version}"
bin="${dir}/bin"
stamp_line="recipe=${recipe} promtool-${version}"

# ---- a promtool supplied by the user -----------------------------------------------------------
if [[ -n "${TEST_ASSET_PROMTOOL:-}" ]]; then
  [[ -f "${TEST_ASSET_PROMTOOL}" && -x "${TEST_ASSET_PROMTOOL}" ]] ||
    die "TEST_ASSET_PROMTOOL points to '${TEST_ASSET_PROMTOOL}', which is not an executable file"
  provided="$(cd "$(dirname "${TEST_ASSET_PROMTOOL}")" && pwd)/$(basename "${TEST_ASSET_PROMTOOL}")"
  log "using promtool from TEST_ASSET_PROMTOOL: ${provided}"
  view="${dir}/provided-$(printf '%s\n' "${provided}" | cksum | cut -d ' ' -f 1)"
  if [[ ! -d "${view}" ]]; then
    mkdir -p "${dir}"
    view_tmp="$(mktemp -d "${dir}/.tmp.XXXXXX")"
    chmod 755 "${view_tmp}"
    ln -s "${provided}" "${view_tmp}/promtool"
    mv -T "${view_tmp}" "${view}" 2>/dev/null || rm -rf "${view_tmp}" # lost a race: fine
  fi
  echo "${view}"
  exit 0
fi

# ---- already built, or build it ------------------------------------------------------------------
serve_cached_or_lock
prepare_go_build "install Go (see go.mod for the version) or point TEST_ASSET_PROMTOOL at an existing binary"
log "building promtool ${version} into ${bin} with $(go version)"

# "<commit time> <commit hash or empty>" of the module, from the proxy's .info file.
info="$(cd "${here}" && go mod download -json "${module}@${version}" |
  sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "${info}" ]] || die "could not download ${module}@${version}"
commit="$(sed -n 's/.*"Hash":"\([0-9a-f]\{40\}\)".*/\1/p' "${info}")"
build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${info}")"

# Version stamping as in upstream's .promu.yml (github.com/prometheus/common/version).
[[ "${version}" =~ ^v0\.([0-9]+)([0-9][0-9])\.([0-9]+)(-.*)?$ ]] ||
  die "unexpected ${module} version ${version}"
release="$((10#${BASH_REMATCH[1]})).$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}${BASH_REMATCH[4]}"
vpkg=github.com/prometheus/common/version
ldflags="-s -w -X ${vpkg}.Version=${release} -X ${vpkg}.Revision=${commit}"
ldflags+=" -X ${vpkg}.Branch=HEAD -X ${vpkg}.BuildUser=scp-operator"
ldflags+=" -X ${vpkg}.BuildDate=${build_date:-unknown}"

start=${SECONDS}
log "go build ${module}/cmd/promtool (Prometheus ${release})"
(cd "${here}" && nice -n 10 go build -p 2 -trimpath -tags netgo,builtinassets \
  -ldflags "${ldflags}" -o "${tmp}/promtool" "${module}/cmd/promtool") ||
  die "building promtool failed"
log "built promtool in $((SECONDS - start))s"

install_built
