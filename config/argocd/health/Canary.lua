-- Argo CD health check for mesh.meshplane.io/Canary, installed in argocd-cm as
-- resource.customizations.health.mesh.meshplane.io_Canary (see kustomization.yaml).
--
-- The generic part reads the status the way kstatus does (as MeshControlPlane.lua does); the
-- Canary's phases refine it where Argo CD has a better word than kstatus:
--   being deleted, generation not observed   Progressing
--   Paused (no data; waits for retryToken)   Suspended     (kstatus: Failed, Stalled=True)
--   Stalled=True: Failed (rolled back),      Degraded      (kstatus: Failed)
--     target missing, Prometheus unreachable,
--     a new revision held by spec.abort
--   AwaitingPromotion (Gated)                Suspended     (kstatus: InProgress)
--   RollingBack                              Degraded      (kstatus: InProgress)
--   Reconciling=True: Initializing,          Progressing   (kstatus: InProgress)
--     Progressing, Restarting, Promoting,
--     Finalizing, primary or routing pending
--   Ready=True: Stable, Succeeded            Healthy       (kstatus: Current)
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

local phase = status.phase or ""
local at = phase .. " at weight " .. (status.targetWeight or 0) .. "%: "

if phase == "Paused" then
  return { status = "Suspended", message = at .. (status.message or "") }
end
local stalled = condition(status, "Stalled")
if isTrue(stalled) then
  return { status = "Degraded", message = stalled.reason .. ": " .. describe(stalled) }
end
if phase == "AwaitingPromotion" then
  return { status = "Suspended", message = at .. (status.message or "") }
end
if phase == "RollingBack" then
  return { status = "Degraded", message = at .. (status.message or "") }
end
local reconciling = condition(status, "Reconciling")
if isTrue(reconciling) then
  return { status = "Progressing", message = at .. describe(reconciling) }
end
local ready = condition(status, "Ready")
if isTrue(ready) then
  return { status = "Healthy", message = phase .. ": " .. (status.message or "") }
end
if ready ~= nil then
  return { status = "Progressing", message = describe(ready) }
end
return { status = "Progressing", message = "Waiting for the Ready condition" }
