"""Verification of published model folders (links.py), for `python -m stages.verify` and `stages.sign`."""
