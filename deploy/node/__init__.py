"""The renalnode DICOM node: listener -> spool + journal -> series completion -> worker (the app)
-> outbox -> dispatcher, each a small part with a durable hand-off through the journal."""
