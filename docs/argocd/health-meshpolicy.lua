-- Argo CD health check for canopy's MeshPolicy (mesh.canopy.dev/v1alpha1).
-- Install it under resource.customizations.health.mesh.canopy.dev_MeshPolicy in argocd-cm.
hs = {}
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to observe the MeshPolicy"
  return hs
end
hs.status = "Progressing"
hs.message = ""
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.message
      return hs
    end
    if c.type == "Ready" then
      hs.message = c.message
      if c.status == "True" then
        hs.status = "Healthy"
      end
    end
  end
end
return hs
