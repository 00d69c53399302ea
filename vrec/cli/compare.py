"""``vrec compare`` (filled in by the compare issue)."""
