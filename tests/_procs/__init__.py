"""Child processes for the reliability tests (crashes, races)."""
