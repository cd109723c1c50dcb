"""A node's data directory: config.toml, the encrypted keystore, creating a new one."""
