"""Orthanc auto-routing to renalnode (orthanc-python plugin; runs inside Orthanc's own Python, so it
uses the standard library only).

When a series becomes stable (no new instance for Orthanc's StableAge), it is sent to the node if
renalnode's series rules call it an abdominal CT, by C-STORE to the modality the configuration
names. The rule is renalnode/series_rules.yaml, rendered into Orthanc's configuration by
`python -m deploy.orthanc.configure` (the same rule the node's routing and the app apply; one test
feeds the same series to all three). Only CT is ever routed, and the node's results are SEG, SR
and DOC (the PDF), so nothing it sends back can loop. Settings in Orthanc's configuration:

    "Renalnode": {
      "Modality": "renalnode",                      // a key of DicomModalities
      "Series": {"Modality": "CT", "BodyParts": [...], "DescriptionPatterns": [...],
                 "ExcludeDescriptionPatterns": [...]}
    }
"""
import json
import re

import orthanc

SERIES_KEYS = ("Modality", "BodyParts", "DescriptionPatterns", "ExcludeDescriptionPatterns")


def settings():
    """The node's modality and the series rule; None (and an error in Orthanc's log) when the
    configuration lacks them: routing nothing is safer than routing by a guess."""
    configured = json.loads(orthanc.GetConfiguration()).get("Renalnode", {})
    series = configured.get("Series", {})
    missing = [key for key in SERIES_KEYS if key not in series]
    if "Modality" not in configured or missing:
        orthanc.LogError("renalnode: Renalnode.Modality or Renalnode.Series %s missing from Orthanc's configuration "
                         "(render it with python -m deploy.orthanc.configure): nothing is routed" % missing)
        return None
    return configured


def refusal(tags, study_tags, rule):
    """Why the series is not routed, or None to route it (renalnode/series_eligibility.py's rule)."""
    modality = tags.get("Modality", "")
    if modality.upper() != rule["Modality"]:
        return "modality %s is not %s" % (modality or "missing", rule["Modality"])
    series_description = tags.get("SeriesDescription", "")
    for pattern in rule["ExcludeDescriptionPatterns"]:
        if re.search(pattern, series_description):
            return "series description matches excluded pattern %r" % pattern
    body_part = tags.get("BodyPartExamined", "").upper()
    if body_part:
        return None if body_part in rule["BodyParts"] else "body part %s is not abdomen" % body_part
    text = "%s %s" % (series_description, study_tags.get("StudyDescription", ""))
    if not any(re.search(pattern, text) for pattern in rule["DescriptionPatterns"]):
        return "no body part, and no description that names the abdomen"
    return None


def on_change(change_type, level, resource_id):
    if change_type != orthanc.ChangeType.STABLE_SERIES:
        return
    config = settings()
    if config is None:
        return
    series = json.loads(orthanc.RestApiGet("/series/%s" % resource_id))
    study = json.loads(orthanc.RestApiGet("/studies/%s" % series["ParentStudy"]))
    why = refusal(series["MainDicomTags"], study["MainDicomTags"], config["Series"])
    if why:
        orthanc.LogInfo("renalnode: series %s not routed (%s)" % (resource_id, why))
        return
    orthanc.RestApiPost("/modalities/%s/store" % config["Modality"],
                        json.dumps({"Resources": [resource_id], "Synchronous": False}))
    orthanc.LogWarning("renalnode: series %s (%d instances) sent to %s"
                       % (resource_id, len(series["Instances"]), config["Modality"]))


orthanc.RegisterOnChangeCallback(on_change)
