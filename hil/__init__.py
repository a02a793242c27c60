"""twinloop: hil package."""
