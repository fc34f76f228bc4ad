"""Front-end plumbing shared by the CLI, the HTTP service and integrations."""
