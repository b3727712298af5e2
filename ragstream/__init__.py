"""ragstream: a Kafka document-ingestion pipeline for retrieval-augmented generation."""

__version__ = "0.1.0"
