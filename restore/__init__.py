"""Restore jobs and restore targets."""
