"""Build and submit Azure ML command jobs for the `job` package."""
