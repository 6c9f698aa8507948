-- ArgoCD health check for virtualserver.scp.dev/VirtualServer (scp-operator).
--
-- Install: deploy/argocd/README.md (argocd-cm key
-- resource.customizations.health.virtualserver.scp.dev_VirtualServer). Test cases:
-- health_test.yaml and testdata/ next to this file, in ArgoCD's format, run with
-- tools/luatest (gopher-lua as ArgoCD runs it: no string/math library, so none is used here).
--
--   Healthy      Ready=True for the object's current generation
--   Progressing  not observed yet, or the conditions describe an older generation (the
--                operator has not caught up with a change); a transient SCP or API error;
--                a deletion under way
--   Degraded     the server is missing or in ERROR in SCP; the spec, region or account cannot
--                be used; the operator's SCP keys are rejected or missing; a deletion blocked
--                until someone acts (the Deleting condition says why)
--
-- A condition whose observedGeneration is below metadata.generation is not trusted for Healthy
-- or Degraded: it was computed for a spec that is no longer the object's.
--
-- Note: ArgoCD itself reports every object that has a deletionTimestamp as "Progressing:
-- Pending deletion" before it consults custom checks, so the deletion branch below serves
-- other tools that run ArgoCD health scripts; in ArgoCD read a blocked deletion's reason from
-- the object's conditions or events (docs/lifecycle.md).

-- Deleting=True reasons that wait for a person: SCP refuses (409, the server locked or
-- something attached) or answers something unknown, the server went to ERROR, the keys or the
-- account cannot be used, the spec or region is wrong, the object is protected or shares its
-- server, a 404 came from somewhere the server never was, or the operator runs in dry-run mode.
local BLOCKING_DELETE = {
  Conflict = true,
  ServerLocked = true,
  Rejected = true,
  DeletionFailed = true,
  Unauthorized = true,
  Forbidden = true,
  CredentialsUnavailable = true,
  AccountNotFound = true,
  AccountInvalid = true,
  AccountNotAdmitted = true,
  AccountCredentialsUnavailable = true,
  InvalidSpec = true,
  InvalidRegion = true,
  DeletionProtected = true,
  ServerShared = true,
  EndpointChanged = true,
  AccountChanged = true,
  AccountUnproven = true,
  DryRun = true,
}

-- Ready=False/Unknown reasons that will not fix themselves.
local BROKEN_READY = {
  ServerNotFound = true,
  ServerError = true,
  InvalidSpec = true,
  InvalidRegion = true,
  AccountNotFound = true,
  AccountInvalid = true,
  AccountNotAdmitted = true,
  AccountCredentialsUnavailable = true,
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

-- The generation the operator has yet to observe, or nil when the condition is current (or
-- either number is missing, in which case there is nothing to compare).
local function unobserved(o, c)
  local generation = o.metadata ~= nil and o.metadata.generation or nil
  local observed = c.observedGeneration
  if type(generation) == "number" and type(observed) == "number" and observed < generation then
    return generation
  end
  return nil
end

local function waiting(generation)
  return "Progressing", "waiting for the operator to observe generation " .. tostring(generation)
end

local function health(o)
  if o.metadata ~= nil and o.metadata.deletionTimestamp ~= nil then
    -- Ready describes the object before its deletion (which bumps the generation): only
    -- the Deleting condition speaks for a terminating object.
    local deleting = condition(o, "Deleting")
    if deleting == nil then
      return "Progressing", "Deletion requested; waiting for scp-operator"
    end
    local generation = unobserved(o, deleting)
    if generation ~= nil then
      return waiting(generation)
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
  local generation = unobserved(o, ready)
  if generation ~= nil then
    return waiting(generation)
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
