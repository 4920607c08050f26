"""Test doubles shipped for users' own tests (loopback only)."""
