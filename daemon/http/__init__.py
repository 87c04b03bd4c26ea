"""HTTP layer: the aiohttp app factory, JSON API, health, metrics."""
