"""OTA manifests: the carriers' TUF metadata (Uptane image and director repositories) and vehicle software checks."""
