"""Verification: parity of bundles against their torch reference."""
