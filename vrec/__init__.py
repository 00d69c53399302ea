"""vrec: visual recommendations from SigLIP vision-language embeddings.

The library behind the ``vrec`` command. Names are imported lazily so that ``import vrec`` (and
``vrec --help``) stays instant; torch and open_clip load only when a model is built.
"""
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "embed": "vrec.embed",
    "EmbedReport": "vrec.embed",
    "search_text": "vrec.search",
    "search_image": "vrec.search",
    "SearchResult": "vrec.search",
    "compare": "vrec.compare",
    "create_encoder": "vrec.encoders",
    "list_models": "vrec.encoders",
    "Encoder": "vrec.encoders",
    "Store": "vrec.store",
    "build_index": "vrec.index",
    "VrecError": "vrec.errors",
    "tag": "vrec.tags",
    "gaps": "vrec.tags",
    "style_map": "vrec.stylemap",
    "evaluate": "vrec.evaluate",
    "export_vectors": "vrec.export",
    "similar_items": "vrec.export",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vrec' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``vrec.embed`` / ``vrec.compare`` the functions even after their modules are imported
    (importing a submodule normally binds the module to that name on the package)."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
