"""Safety and provenance: moderation, visible and invisible watermarks, C2PA signing."""
