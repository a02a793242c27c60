"""twinloop: drivers package."""
