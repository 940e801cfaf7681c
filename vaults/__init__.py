"""Backup vaults, their keys and the region object stores (the data plane grows here)."""
