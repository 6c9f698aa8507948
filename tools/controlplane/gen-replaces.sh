#!/usr/bin/env bash
# Regenerate tools/controlplane/kube/go.mod for a Kubernetes release.
#
# k8s.io/kubernetes cannot be consumed as an ordinary module dependency: its go.mod requires
# every staging module (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and points them at
# ./staging/src/... with replace directives, and replace directives of dependencies are
# ignored by Go. A consumer therefore needs one `replace k8s.io/X => k8s.io/X v0.N.M` per
# staging module. This script derives that list from upstream's go.mod for the requested
# release (never typed by hand), pins k8s.io/kubernetes, and runs `go mod tidy`.
#
# Usage: tools/controlplane/gen-replaces.sh [v1.N.M]   (default: the version already pinned)
# Needs network access to the Go module proxy. Review and commit kube/go.mod + kube/go.sum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod_dir="${here}/kube"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

current="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}
                $1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "${mod_dir}/go.mod")"
version="${1:-${current}}"
if [[ ! "${version}" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "gen-replaces: expected a Kubernetes release like v1.37.2, got '${version}'" >&2
  exit 2
fi
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

# `go mod download -json` prints the path of the downloaded go.mod in its "GoMod" field.
upstream_gomod="$(go mod download -json "k8s.io/kubernetes@${version}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "${upstream_gomod}" || ! -f "${upstream_gomod}" ]]; then
  echo "gen-replaces: could not download go.mod of k8s.io/kubernetes@${version}" >&2
  exit 1
fi

# Staging modules: every `k8s.io/X => ./staging/src/k8s.io/X` replace in upstream's go.mod.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' \
  "${upstream_gomod}" | sort -u)
if (( ${#staging[@]} == 0 )); then
  echo "gen-replaces: found no staging replaces in ${upstream_gomod}" >&2
  exit 1
fi

cd "${mod_dir}"
# Drop every existing k8s.io replace, then add the generated ones.
mapfile -t old < <(go mod edit -json | sed -n 's/^[[:space:]]*"Path": "\(k8s\.io\/[^"]*\)",\{0,1\}$/\1/p' | sort -u)
edit_args=()
for m in "${old[@]}"; do edit_args+=("-dropreplace=${m}"); done
for m in "${staging[@]}"; do edit_args+=("-replace=${m}=${m}@${staging_version}"); done
go mod edit "${edit_args[@]}" "-require=k8s.io/kubernetes@${version}"
go mod tidy
echo "gen-replaces: k8s.io/kubernetes ${version}, ${#staging[@]} staging modules at ${staging_version}" >&2
