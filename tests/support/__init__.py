"""Test-only helpers: loopback servers, a headless browser, Ray process lookup."""
