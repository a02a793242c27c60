"""twinloop: controller package."""
