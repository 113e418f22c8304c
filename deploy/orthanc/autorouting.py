"""Orthanc auto-routing to renalnode (orthanc-python plugin; runs inside Orthanc's own Python, so it
uses the standard library only).

When a series becomes stable (no new instance for Orthanc's StableAge), it is sent to the node if it
is an abdominal CT, by C-STORE to the modality the configuration names. Only CT is ever routed, and
the node's results are SEG, SR and DOC (the PDF), so nothing it sends back can loop. Settings in
Orthanc's configuration:

    "Renalnode": {
      "Modality": "renalnode",                      // a key of DicomModalities
      "BodyParts": ["ABDOMEN", "ABDOMENPELVIS", ...],
      "DescriptionPatterns": ["(?i)abd", ...]       // used when BodyPartExamined is empty
    }
"""
import json
import re

import orthanc

DEFAULTS = {"Modality": "renalnode",
            "BodyParts": ["ABDOMEN", "ABDOMENPELVIS", "ABDOMEN_PELVIS", "CHEST_ABDOMEN_PELVIS", "KIDNEY", "RENAL"],
            "DescriptionPatterns": ["(?i)abd", "(?i)pelvi", "(?i)renal", "(?i)kidney", "(?i)urogra"]}


def settings():
    configured = json.loads(orthanc.GetConfiguration()).get("Renalnode", {})
    return {key: configured.get(key, value) for key, value in DEFAULTS.items()}


def should_route(tags, study_tags, config):
    """(True, '') to route, or (False, why not)."""
    modality = tags.get("Modality", "")
    if modality != "CT":
        return False, "modality %s" % (modality or "missing")
    body_part = tags.get("BodyPartExamined", "").upper()
    if body_part:
        return (body_part in config["BodyParts"]), "body part %s" % body_part
    text = "%s %s" % (tags.get("SeriesDescription", ""), study_tags.get("StudyDescription", ""))
    if any(re.search(pattern, text) for pattern in config["DescriptionPatterns"]):
        return True, ""
    return False, "no body part, description does not name the abdomen"


def on_change(change_type, level, resource_id):
    if change_type != orthanc.ChangeType.STABLE_SERIES:
        return
    series = json.loads(orthanc.RestApiGet("/series/%s" % resource_id))
    study = json.loads(orthanc.RestApiGet("/studies/%s" % series["ParentStudy"]))
    config = settings()
    route, why = should_route(series["MainDicomTags"], study["MainDicomTags"], config)
    if not route:
        orthanc.LogInfo("renalnode: series %s not routed (%s)" % (resource_id, why))
        return
    orthanc.RestApiPost("/modalities/%s/store" % config["Modality"],
                        json.dumps({"Resources": [resource_id], "Synchronous": False}))
    orthanc.LogWarning("renalnode: series %s (%d instances) sent to %s"
                       % (resource_id, len(series["Instances"]), config["Modality"]))


orthanc.RegisterOnChangeCallback(on_change)
