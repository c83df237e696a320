-- Argo CD health check for mesh.meshplane.io/MeshControlPlane, installed in argocd-cm as
-- resource.customizations.health.mesh.meshplane.io_MeshControlPlane (see kustomization.yaml).
--
-- It reads the status the way kstatus does, so Argo CD and kstatus users see the same thing:
--   being deleted                            Progressing
--   generation not observed yet              Progressing
--   Stalled=True                             Degraded      (kstatus: Failed)
--   Reconciling=True                         Progressing   (kstatus: InProgress)
--   Ready=True                               Healthy       (kstatus: Current)
--   otherwise                                Progressing
--
-- Argo CD runs checks from argocd-cm with Lua's base and table libraries only: no string,
-- math or os functions here. config/argocd/README.md says how to add a kind.

local function condition(status, conditionType)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  if c == nil or c.message == nil or c.message == "" then
    return ""
  end
  return c.message
end

if obj.metadata.deletionTimestamp ~= nil then
  return { status = "Progressing", message = "Pending deletion" }
end
local status = obj.status
if status == nil or status.conditions == nil then
  return { status = "Progressing", message = "Waiting for the operator to report status" }
end
local generation = obj.metadata.generation or 0
local observed = status.observedGeneration or 0
if observed < generation then
  return { status = "Progressing",
           message = "Waiting for the operator to observe generation " .. generation .. " (status is for " .. observed .. ")" }
end

local stalled = condition(status, "Stalled")
if isTrue(stalled) then
  return { status = "Degraded", message = stalled.reason .. ": " .. describe(stalled) }
end
local reconciling = condition(status, "Reconciling")
if isTrue(reconciling) then
  return { status = "Progressing", message = describe(reconciling) }
end
local ready = condition(status, "Ready")
if isTrue(ready) then
  return { status = "Healthy", message = describe(ready) }
end
if ready ~= nil then
  return { status = "Progressing", message = describe(ready) }
end
return { status = "Progressing", message = "Waiting for the Ready condition" }
