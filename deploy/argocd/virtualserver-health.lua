-- ArgoCD health check for virtualserver.scp.dev/VirtualServer (scp-operator).
--
-- Install: see deploy/argocd/README.md (argocd-cm key
-- resource.customizations.health.virtualserver.scp.dev_VirtualServer). Written for Lua 5.1
-- (ArgoCD's gopher-lua) and tested against sample objects in
-- tests/packaging/test_argocd_health.py.
--
--   Healthy      Ready=True, not being deleted
--   Progressing  not observed yet; a transient SCP or API error; deletion under way
--   Degraded     the server is missing or in ERROR in SCP; the operator cannot use its SCP
--                keys; a deletion blocked until someone acts (the Deleting condition says why)
--
-- Note: ArgoCD itself reports every object that has a deletionTimestamp as "Progressing:
-- Pending deletion" before it consults custom checks, so the deletion branch below serves
-- other tools that run ArgoCD health scripts; in ArgoCD read a blocked deletion's reason from
-- the object's conditions or events (docs/lifecycle.md).

-- Deletion holds that wait for a person: SCP refuses (409), the keys are wrong or lack IAM
-- permission, the object is protected or shares its server, or SCP answered something unknown.
local BLOCKING_DELETE = {
  Conflict = true,
  Unauthorized = true,
  Forbidden = true,
  CredentialsUnavailable = true,
  DeletionProtected = true,
  ServerShared = true,
  DeletionFailed = true,
  Rejected = true,
  DryRun = true,
}

-- Ready=False/Unknown reasons that will not fix themselves.
local BROKEN_READY = {
  ServerNotFound = true,
  ServerError = true,
  Unauthorized = true,
  Forbidden = true,
  CredentialsUnavailable = true,
  Rejected = true,
}

local function condition(o, kind)
  if o.status == nil or o.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(o.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function health(o)
  local deleting = condition(o, "Deleting")
  if o.metadata ~= nil and o.metadata.deletionTimestamp ~= nil then
    if deleting == nil then
      return "Progressing", "Deletion requested; waiting for scp-operator"
    end
    if deleting.status == "True" and BLOCKING_DELETE[deleting.reason] then
      return "Degraded", "Deletion blocked: " .. describe(deleting)
    end
    return "Progressing", "Deleting: " .. describe(deleting)
  end

  local ready = condition(o, "Ready")
  if ready == nil then
    return "Progressing", "Waiting for scp-operator to observe the server"
  end
  if ready.status == "True" then
    return "Healthy", describe(ready)
  end
  if BROKEN_READY[ready.reason] then
    return "Degraded", describe(ready)
  end
  return "Progressing", describe(ready)
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
