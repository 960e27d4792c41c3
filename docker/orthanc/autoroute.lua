-- The hospital's routing rule (Orthanc's Lua, named in orthanc.json's LuaScripts): each image a modality stores here
-- is sent on to the trial's DICOM listener, the modality "cxr". Reports the trial sends back (its own AE title,
-- CXRTRIAL) stay here. What the trial answered is in Orthanc's log: a refusal (not a chest radiograph, the trial
-- paused) fails the store there, and the trial's screening log says why.
function OnStoredInstance(instanceId, tags, metadata, origin)
   if origin['RequestOrigin'] == 'DicomProtocol' and origin['RemoteAet'] ~= 'CXRTRIAL' then
      SendToModality(instanceId, 'cxr')
   end
end
