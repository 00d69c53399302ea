"""What is kept on disk: the store (vectors, catalog table, manifests), HNSW indexes and the
``--filter`` language over the catalog's metadata."""
