"""Framework-free data processing for the tasks: features, post-processing and metrics, shared by the backends."""
