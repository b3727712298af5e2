"""Checks of the deploy files (Dockerfile, compose, Kubernetes), offline and fast."""
