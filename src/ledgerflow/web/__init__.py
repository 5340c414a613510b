"""Serving HTTP: uvicorn, the access log and request metrics, JSON errors, and the probes
every ledgerflow process answers."""
