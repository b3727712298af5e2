"""The HTTP API (FastAPI): upload, job progress, documents, chunks, search, webhooks, health.

:func:`ragstream.api.app.create_app` builds the application from the settings.
"""
