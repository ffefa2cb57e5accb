"""Private helpers shared by every phase: atomic JSON files, progress bars, parameter
constraints, registries. Nothing here knows about models or compression."""
