"""The monitor: stuck-document watchdog, stage throughput windows, alerts (``ragstream monitor``).

``logic`` decides, ``app`` is the faust-streaming app, ``probe`` looks at the consumer
groups, ``store`` and ``alerts`` keep and publish what was found.
"""
