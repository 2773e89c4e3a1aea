"""fleet: immutable images for cattle, Terraform for every machine, Vault for secrets, Consul for discovery."""

__version__ = "0.1.0"
