"""RGM training (placeholder, filled below)."""
