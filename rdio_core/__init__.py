"""Shared data layer for rdio-api: settings, models, migrations, audio storage.

Imported by both the HTTP API (``rdio_api``) and the Celery worker (``rdio_tasks``); it never
imports either of them.
"""
