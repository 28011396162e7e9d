"""Small helpers of the provider that belong to no single hook, operator or sensor."""
