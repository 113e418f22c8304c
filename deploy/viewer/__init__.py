"""The radiologist's viewer in the deployment: OHIF v3 served with Orthanc's DICOMweb under one origin."""
