"""fleet: immutable images for cattle, Terraform for every machine, Vault secrets, Consul discovery."""

__version__ = "0.1.0"
