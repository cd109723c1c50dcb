"""The `transx` command line: one module per command group, and the public API its plugins use (plugin_api)."""
