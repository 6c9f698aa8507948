#!/usr/bin/env bash
# Build (once) and cache argocd-lua-health, the runner of the ArgoCD health-check tests
# (deploy/argocd/resource_customizations/*/*/{health.lua,health_test.yaml}).
#
# It is this directory's Go program, built against the gopher-lua, gopher-json and
# sigs.k8s.io/yaml versions pinned in go.mod (those of ArgoCD's own go.mod), from the Go module
# proxy with CGO_ENABLED=0, GOTOOLCHAIN=local and -trimpath, into
#
#   ${SCP_OPERATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scp-operator}/
#       luatest-<gopher-lua version>-<source digest>/bin/argocd-lua-health
#
# The source digest covers go.mod, go.sum and the *.go files, so an edited runner gets a new
# directory instead of a stale binary. The binary is built in a temporary directory and renamed
# into bin/ only when complete; a stamp file is written afterwards, so an interrupted build is
# never mistaken for a finished one. A second run only checks the stamp.
#
# Output: progress goes to stderr; the LAST line of stdout is the bin directory.
# Needs no input (fine under CI=true); Go is only needed when something must be built.
#
# Usage: build.sh [--check]
#   --check   build nothing: print the bin directory and exit 0 if the binary is built,
#             else say so on stderr and exit 3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tool=luatest
name=argocd-lua-health
# shellcheck source=../lib/cached-go-build.sh
source "${here}/../lib/cached-go-build.sh"
parse_build_args "$@"
# Bump when the way the binary is built changes (flags, ldflags) to invalidate caches.
recipe=1

lua_version="$(awk '
  $1 == "require" && $2 == "github.com/yuin/gopher-lua" { print $3; exit }
  $1 == "github.com/yuin/gopher-lua" && $2 ~ /^v[0-9]/ { print $2; exit }' "${here}/go.mod")"
[[ -n "${lua_version}" ]] || die "could not read the gopher-lua version from ${here}/go.mod"

# Digest of everything that goes into the binary besides the pinned modules' own code.
digest="$(cd "${here}" && LC_ALL=C ls go.mod go.sum ./*.go | LC_ALL=C sort |
  xargs sha256sum | sha256sum | cut -c 1-12)"

key="luatest-${lua_version}-${digest}"
dir="${cache_root}/${key}"
bin="${dir}/bin"
stamp_line="recipe=${recipe} ${key}"

serve_cached_or_lock
prepare_go_build "install Go (see ${here}/go.mod for the version)"
log "building ${name} (gopher-lua ${lua_version}) into ${bin} with $(go version)"
start=${SECONDS}
(cd "${here}" && nice -n 10 go build -p 2 -trimpath -ldflags "-s -w" -o "${tmp}/${name}" .) ||
  die "building ${name} failed"
log "built ${name} in $((SECONDS - start))s"
install_built
