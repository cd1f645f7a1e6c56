"""HTTP routes, kept thin: parsing and responses here, work in rdio_api.ingest and rdio_core."""
