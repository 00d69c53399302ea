"""vrec: visual recommendations from SigLIP vision-language embeddings.

The library behind the ``vrec`` command. Names are imported lazily so that ``import vrec`` (and
``vrec --help``) stays instant; torch and open_clip load only when a model is built.
"""
from vrec.base import __version__
from vrec.base.logs import show_library_logs

show_library_logs()  # the library's notes on stderr, as the CLI shows them (see vrec.base.logs)

_EXPORTS = {
    "embed": "vrec.ingest.embed",
    "EmbedReport": "vrec.ingest.embed",
    "search_text": "vrec.search.hybrid",  # vector, keyword or hybrid (see vrec.search.hybrid)
    "search_image": "vrec.search.query",
    "SearchResult": "vrec.search.query",
    "compare": "vrec.search.compare",
    "facets": "vrec.search.facets",
    "create_encoder": "vrec.models.encoders",
    "list_models": "vrec.models.encoders",
    "Encoder": "vrec.models.encoders",
    "Store": "vrec.store.store",
    "build_index": "vrec.store.index",
    "VrecError": "vrec.base.errors",
    "tag": "vrec.search.tags",
    "gaps": "vrec.search.tags",
    "style_map": "vrec.search.stylemap",
    "evaluate": "vrec.experiments.evaluate",
    "export_vectors": "vrec.search.export",
    "similar_items": "vrec.search.export",
    "find_dupes": "vrec.search.dupes",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vrec' has no attribute {name!r}")

