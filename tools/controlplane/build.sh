#!/usr/bin/env bash
# Build (once) and cache the control-plane binaries used by the e2e tests and the sandbox:
# kube-apiserver, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd) and helm (helm.sh/helm).
#
# The versions are the ones pinned in the committed go.mod files next to this script
# (kube/, etcd/, helm/). Binaries are built from the Go module proxy with CGO_ENABLED=0,
# GOTOOLCHAIN=local and -trimpath, with real release version information stamped in, into
#
#   ${SCP_OPERATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scp-operator}/controlplane/
#       k8s-<v>_etcd-<v>_helm-<v>/bin/{kube-apiserver,etcd,kubectl,helm}
#
# Each binary is built in a temporary directory and renamed into bin/ only when complete, and
# a per-binary stamp plus an overall stamp file are written afterwards, so an interrupted build
# is never mistaken for a finished one. A second run only checks the stamp.
#
# Binaries you already have are used instead of being built (only missing ones are built):
#   TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBECTL   explicit paths
#   KUBEBUILDER_ASSETS                 a directory with kube-apiserver, etcd, kubectl (, helm)
#   TEST_ASSET_HELM, HELM_BINARY       explicit path to helm
# (TEST_ASSET_* take precedence over KUBEBUILDER_ASSETS, as in controller-runtime's envtest.)
# In that case the printed directory is a directory of symlinks to the chosen binaries.
#
# Output: progress goes to stderr; the LAST line of stdout is the bin directory.
# Needs no input (fine under CI=true); Go is only needed when something must be built.
#
# Usage: build.sh [--check]
#   --check   build nothing: print the bin directory and exit 0 if nothing needs building,
#             else name what is missing on stderr and exit 3.
set -euo pipefail

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Bump when the way binaries are built changes (flags, tags, ldflags) to invalidate caches.
recipe=1
names=(kube-apiserver etcd kubectl helm)

log() { echo "controlplane: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Version of module $2 required by go.mod in directory $1 (parsed without running go).
mod_version() {
  awk -v m="$2" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "${here}/$1/go.mod"
}
# Path of the helm module (helm.sh/helm/v3 or helm.sh/helm/v4) required by helm/go.mod.
helm_module="$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^helm\.sh\/helm\/v[0-9]+$/) { print $i; exit } }' \
  "${here}/helm/go.mod")"
k8s_version="$(mod_version kube k8s.io/kubernetes)"
etcd_version="$(mod_version etcd go.etcd.io/etcd/server/v3)"
helm_version="$(mod_version helm "${helm_module}")"
[[ -n "${k8s_version}" && -n "${etcd_version}" && -n "${helm_version}" ]] ||
  die "could not read pinned versions from ${here}/{kube,etcd,helm}/go.mod"

cache_root="${SCP_OPERATOR_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/scp-operator}/controlplane"
key="k8s-${k8s_version}_etcd-${etcd_version}_helm-${helm_version}"
dir="${cache_root}/${key}"
bin="${dir}/bin"
stamp_line="recipe=${recipe} ${key}"

# ---- binaries supplied by the user -------------------------------------------------------
declare -A provided=()
env_var_for() {
  case "$1" in
    kube-apiserver) echo TEST_ASSET_KUBE_APISERVER ;;
    etcd) echo TEST_ASSET_ETCD ;;
    kubectl) echo TEST_ASSET_KUBECTL ;;
    helm) echo TEST_ASSET_HELM ;;
  esac
}
use_provided() { # name path source
  [[ -f "$2" && -x "$2" ]] || die "$3 points to '$2', which is not an executable file"
  provided[$1]="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
  log "using $1 from $3: ${provided[$1]}"
}
for name in "${names[@]}"; do
  var="$(env_var_for "${name}")"
  if [[ -n "${!var:-}" ]]; then
    use_provided "${name}" "${!var}" "${var}"
  elif [[ "${name}" == helm && -n "${HELM_BINARY:-}" ]]; then
    use_provided helm "${HELM_BINARY}" HELM_BINARY
  elif [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/${name}" ]]; then
    use_provided "${name}" "${KUBEBUILDER_ASSETS}/${name}" KUBEBUILDER_ASSETS
  fi
done

# ---- fast path: everything already built --------------------------------------------------
all_cached() {
  [[ -f "${dir}/stamp" && "$(head -n 1 "${dir}/stamp")" == "${stamp_line}" ]] || return 1
  local n
  for n in "${names[@]}"; do [[ -x "${bin}/${n}" ]] || return 1; done
}
binary_cached() { # name
  [[ -x "${bin}/$1" && -f "${dir}/stamps/$1" && "$(cat "${dir}/stamps/$1")" == "${stamp_line}" ]]
}

if ((${#provided[@]} == 0)) && all_cached; then
  echo "${bin}"
  exit 0
fi

# ---- slow path: build what is missing -------------------------------------------------------
mkdir -p "${dir}"
if ((!check_only)) && command -v flock >/dev/null 2>&1; then
  exec 9>"${dir}/.lock"
  flock 9 # another build.sh may be building the same key right now; wait for it
fi

missing=()
for name in "${names[@]}"; do
  [[ -n "${provided[${name}]:-}" ]] && continue
  binary_cached "${name}" || missing+=("${name}")
done

if ((${#missing[@]} > 0 && check_only)); then
  log "not built yet: ${missing[*]} (in ${bin})"
  exit 3
fi
if ((${#missing[@]} > 0)); then
  command -v go >/dev/null 2>&1 ||
    die "Go is needed to build ${missing[*]}; install Go (see kube/go.mod for the version)" \
      "or point TEST_ASSET_*/KUBEBUILDER_ASSETS/HELM_BINARY at existing binaries"
  export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
  unset GOOS GOARCH # always build for the host
  log "building ${missing[*]} into ${bin} with $(go version)"
  mkdir -p "${bin}" "${dir}/stamps"
  tmp="$(mktemp -d "${dir}/.tmp.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT

  # "<commit time> <commit hash or empty>" of module $2@$3, from the proxy's .info file.
  module_info() {
    local info time hash
    info="$(cd "${here}/$1" && go mod download -json "$2@$3" |
      sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "${info}" ]] || die "could not download $2@$3"
    time="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${info}")"
    hash="$(sed -n 's/.*"Hash":"\([0-9a-f]\{40\}\)".*/\1/p' "${info}")"
    echo "${time:-1970-01-01T00:00:00Z} ${hash}"
  }
  go_build() { # module-dir ldflags tags output packages...
    local mod="$1" ldflags="$2" tags="$3" out="$4" start=${SECONDS}
    shift 4
    log "go build $* (in ${mod}/)"
    (cd "${here}/${mod}" && nice -n 10 go build -p 2 -trimpath -tags "${tags}" \
      -ldflags "${ldflags}" -o "${out}" "$@") || die "building $* failed"
    log "built $* in $((SECONDS - start))s"
  }
  install_binary() { # name
    mv -f "${tmp}/$1" "${bin}/$1"
    echo "${stamp_line}" >"${dir}/stamps/$1"
  }
  wants() { [[ " ${missing[*]} " == *" $1 "* ]]; }

  # kube-apiserver / kubectl: version stamping as in upstream's hack/lib/version.sh.
  pkgs=()
  wants kube-apiserver && pkgs+=(k8s.io/kubernetes/cmd/kube-apiserver)
  wants kubectl && pkgs+=(k8s.io/kubernetes/cmd/kubectl)
  if ((${#pkgs[@]} > 0)); then
    info="$(module_info kube k8s.io/kubernetes "${k8s_version}")"
    read -r k8s_time k8s_commit <<<"${info}"
    [[ "${k8s_version}" =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected version ${k8s_version}"
    ldflags="-s -w"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ldflags+=" -X ${pkg}.gitVersion=${k8s_version}"
      ldflags+=" -X ${pkg}.gitMajor=${BASH_REMATCH[1]} -X ${pkg}.gitMinor=${BASH_REMATCH[2]}"
      ldflags+=" -X ${pkg}.gitCommit=${k8s_commit} -X ${pkg}.gitTreeState=clean"
      ldflags+=" -X ${pkg}.buildDate=${k8s_time}"
    done
    go_build kube "${ldflags}" selinux,notest,grpcnotrace "${tmp}/" "${pkgs[@]}"
    wants kube-apiserver && install_binary kube-apiserver
    wants kubectl && install_binary kubectl
  fi

  # etcd: its version is a constant of the module; only the git SHA is stamped (when known).
  if wants etcd; then
    info="$(module_info etcd go.etcd.io/etcd/server/v3 "${etcd_version}")"
    read -r _ etcd_commit <<<"${info}"
    ldflags="-s -w"
    [[ -n "${etcd_commit}" ]] && ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_commit:0:7}"
    go_build etcd "${ldflags}" "" "${tmp}/etcd" go.etcd.io/etcd/server/v3
    install_binary etcd
  fi

  if wants helm; then
    info="$(module_info helm "${helm_module}" "${helm_version}")"
    read -r _ helm_commit <<<"${info}"
    ldflags="-s -w -X ${helm_module}/internal/version.version=${helm_version}"
    ldflags+=" -X ${helm_module}/internal/version.gitCommit=${helm_commit}"
    ldflags+=" -X ${helm_module}/internal/version.gitTreeState=clean"
    go_build helm "${ldflags}" "" "${tmp}/helm" "${helm_module}/cmd/helm"
    install_binary helm
  fi
fi

complete=1
for name in "${names[@]}"; do binary_cached "${name}" || complete=0; done
if ((complete)) && ! all_cached; then
  {
    echo "${stamp_line}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for name in "${names[@]}"; do echo "${name}=$(cat "${dir}/stamps/${name}")"; done
  } >"${dir}/stamp.tmp"
  mv -f "${dir}/stamp.tmp" "${dir}/stamp"
fi

if ((${#provided[@]} == 0)); then
  echo "${bin}"
  exit 0
fi

# Mixed set: a directory of symlinks, keyed by the chosen paths.
links=()
for name in "${names[@]}"; do links+=("${name}=${provided[${name}]:-${bin}/${name}}"); done
view="${dir}/mixed-$(printf '%s\n' "${links[@]}" | cksum | cut -d ' ' -f 1)"
if [[ ! -d "${view}" ]]; then
  view_tmp="$(mktemp -d "${dir}/.tmp.XXXXXX")"
  chmod 755 "${view_tmp}"
  for link in "${links[@]}"; do ln -s "${link#*=}" "${view_tmp}/${link%%=*}"; done
  mv -T "${view_tmp}" "${view}" 2>/dev/null || rm -rf "${view_tmp}" # lost a race: fine
fi
echo "${view}"
