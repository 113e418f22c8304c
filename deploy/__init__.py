"""The DICOM node service: listener, spool, journal, worker, dispatcher and web; Orthanc and MAP packaging."""
