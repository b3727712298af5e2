"""Parsing through LlamaParse: submit with our webhook URL, then take the result once.

The parse stage submits (:mod:`.stage`); the signed webhook and the poller for
overdue jobs both hand the result to :func:`.results.complete`, whose write is
idempotent, so whichever comes first wins and the other changes nothing.
"""
