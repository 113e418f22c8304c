"""Custom MONAI Deploy operators of the renalnode application, one a module."""
