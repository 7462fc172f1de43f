"""The supervision trees (shadow, live) and the OS service units."""
