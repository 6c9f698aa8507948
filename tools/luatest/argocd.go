package main

// How ArgoCD evaluates a health script, reproduced from ArgoCD v3.5.1, util/lua/lua.go
// (https://github.com/argoproj/argo-cd, Apache-2.0): VM.runLuaWithResourceActionParameters,
// VM.ExecuteHealthLua, decodeValue and isValidHealthStatusCode. Importing that package instead
// would pull all of ArgoCD (and its Kubernetes replace directives, which Go ignores in a
// dependency) into this small tool; the parts below are the whole of what a health script sees.
//
// What ArgoCD gives a health script, and so what this runner gives it:
//   - a fresh lua.LState per evaluation, with the standard libraries NOT opened (argocd-cm
//     scripts run so unless resource.customizations.useOpenLibs.<group_kind> is "true"; ArgoCD's
//     built-in scripts and its own unit test open them all), then package, base, table and a
//     "safe" os (time and date only) opened on top. No string, math or io library, and no json
//     module. ArgoCD's OpenSafeOs registers its functions under the table library's name, so
//     without the standard libraries there is no os global: only require("os") (preloaded)
//     reaches time and date;
//   - the globals obj (the object, converted by decodeValue) and actionParams (an empty table);
//   - a one-second deadline;
//   - the script's return value: a table is encoded to JSON by layeh.com/gopher-json and decoded
//     into {status, message}; nil means "no opinion"; an unknown status becomes Unknown.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

const invalidHealthStatus = "Lua returned an invalid health status"

// HealthStatus is gitops-engine's health.HealthStatus: what ArgoCD shows for a resource.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// validHealthStatus lists gitops-engine's HealthStatusCode values.
var validHealthStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// runLua is ArgoCD's VM.runLuaWithResourceActionParameters without action parameters.
func runLua(obj map[string]any, script string, openLibs bool) (*lua.LState, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, OpenSafeOs},
	} {
		if err := l.CallByParam(lua.P{
			Fn:      l.NewFunction(pair.f),
			NRet:    0,
			Protect: true,
		}, lua.LString(pair.n)); err != nil {
			l.Close()
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, SafeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	l.SetContext(ctx)

	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// executeHealthLua is ArgoCD's VM.ExecuteHealthLua.
func executeHealthLua(obj map[string]any, script string, openLibs bool) (*HealthStatus, error) {
	l, err := runLua(obj, script, openLibs)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	returnValue := l.Get(-1)
	switch returnValue.Type() {
	case lua.LTTable:
		jsonBytes, err := luajson.Encode(returnValue)
		if err != nil {
			return nil, err
		}
		healthStatus := &HealthStatus{}
		if err := json.Unmarshal(jsonBytes, healthStatus); err != nil {
			// An empty Lua table encodes as [] (ArgoCD: "caused by an empty object").
			var typeError *json.UnmarshalTypeError
			if errors.As(err, &typeError) {
				return &HealthStatus{}, nil
			}
			return nil, err
		}
		if !validHealthStatus[healthStatus.Status] {
			return &HealthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
		}
		return healthStatus, nil
	case lua.LTNil:
		return &HealthStatus{}, nil
	}
	return nil, fmt.Errorf("expect table output from Lua script, not %s", returnValue.Type().String())
}

// decodeValue is ArgoCD's conversion of the unstructured object into Lua values.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	case nil:
		return lua.LNil
	}
	return lua.LNil
}
