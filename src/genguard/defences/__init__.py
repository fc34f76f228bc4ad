"""The defences around the gate: PDQ blocklist, attempt monitor, audit log."""
