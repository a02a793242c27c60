"""twinloop: twinloop package."""
