"""Storage: tables, migrations, the blob store and the idempotent writes."""
