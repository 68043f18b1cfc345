"""Procedural scenes, the demo model trained on them, and its held-out evaluation set."""
