"""The example's views: a JSON API and a small page per scenario."""
