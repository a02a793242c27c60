"""twinloop: patient_model package."""
