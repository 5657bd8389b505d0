"""The backup stage: warehouse backups with a checksummed manifest, verified restore, retention purge."""
