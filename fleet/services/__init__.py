"""What several use cases stand on: the lab's layout, the catalog, state and history, locks,
nodes on Terraform, leak scanning, bake inputs, verdicts, and node access."""
