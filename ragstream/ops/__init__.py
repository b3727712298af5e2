"""Operator tooling: replay a stage, back-fill a new embedding model, work the DLQs.

Each module is plain functions over the Kafka AdminClient, a consumer or a
producer, and the database; the CLI only parses arguments and prints. Nothing
here touches a document's status except through :mod:`ragstream.db.repository`.
"""
