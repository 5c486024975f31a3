"""Per-face features for the AU stage: similarity-aligned masked face, FHOG, geometry."""
