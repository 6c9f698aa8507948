// Builds argocd-lua-health, which runs deploy/argocd/resource_customizations/*/*/health.lua
// against its health_test.yaml the way ArgoCD does. The Lua and JSON modules are pinned at the
// versions ArgoCD v3.5.1's go.mod requires; build with tools/luatest/build.sh.
module scp-operator/tools/luatest

go 1.26.0

require (
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.4 // indirect
