"""The MAAS 2.0 REST client: one signed, bounded request at a time, MAAS's wire format, the
retry policy and the typed errors it raises. Knows nothing of teuthology or of nodes' lives."""
