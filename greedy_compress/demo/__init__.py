"""The embedded default job: bundled digits data, a seeded training loop, reference models."""
