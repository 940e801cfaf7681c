"""Cross-region replication of vaults (replication pairs and the copy engine)."""
