"""twinloop: trials package."""
