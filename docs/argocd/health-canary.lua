-- Argo CD health check for canopy's Canary (mesh.canopy.dev/v1alpha1).
-- Install it under resource.customizations.health.mesh.canopy.dev_Canary in argocd-cm.
hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end

if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to observe the Canary"
  return hs
end

local ready = condition("Ready")
local stalled = condition("Stalled")
local message = ""
if ready ~= nil and ready.message ~= nil then
  message = ready.message
end
hs.message = message

if obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: " .. message
  return hs
end
if obj.status.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: " .. message
  return hs
end

local phase = obj.status.phase
if phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
elseif phase == "Initialized" or phase == "Succeeded" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
return hs
