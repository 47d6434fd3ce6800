"""Model backends: one adapter per library, one registry of factories."""
