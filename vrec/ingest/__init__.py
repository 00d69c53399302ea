"""Getting a catalog into the store: catalog sources and metadata, the embedding pipeline
(threads or a Ray cluster), and the cost of embedding a catalog."""
