"""Model architecture: config.json parsing, sources (local, hub, bundled), parameter counting."""
