"""Cross-service tests: the stages together, as processes, against real servers."""
