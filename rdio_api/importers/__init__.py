"""Bringing existing archives in: sdrtrunk-rdio-api, rdio-scanner and trunk-recorder imports
(``rdio-api import ...``) and the watched folder (``ingest.watch_dirs``).

Each source module turns its archive into :class:`rdio_api.importers.run.SourceCall` rows; ``run``
stores them through the live upload path's writer (``rdio_api.ingest``), so an imported call gets
the same units, search entries and events as an uploaded one and is de-duplicated against it.
"""
