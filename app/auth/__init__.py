"""Accounts, passwords and JWT sessions."""
