"""Heads shipped with genguard (this folder installs as ``genguard._heads``); see MODEL_CARD.md."""
