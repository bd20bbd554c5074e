"""Logistic regression trained on CKKS-encrypted data (issue 5): params, circuits, roles, references."""
