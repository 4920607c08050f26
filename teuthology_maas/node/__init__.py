"""One node's lifecycle: decide, act, wait, verify, explain. `MaasProvisioner` is its face."""
