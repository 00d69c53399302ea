"""The models of a long-lived server: loaded once, shared by every request, one encoding at a time.

A command loads its model for one query; a server would pay that load (seconds) on every
request. ``Encoders`` keeps one encoder per model -- the text tower alone until a photo needs the
image tower -- and runs one encoding at a time (torch or onnxruntime already uses every core for
one query). It also keeps the vectors of the last ``TEXT_CACHE_SIZE`` query texts, since encoding
is nearly all of a text query's time and people ask the same text again (refining filters,
paging back, changing k). ``SharedEncoder`` is the face of that pool that ``vrec.search.query`` takes
as its ``encoder=``, so the server's answers come from the same functions as the command line's.

``pick_models`` chooses the server's search model and the model it compares with.
"""
import threading
from collections import OrderedDict
from collections.abc import Sequence

from vrec.base.errors import NotEmbedded, VrecError
from vrec.store.store import ModelStore, Store

TEXT_CACHE_SIZE = 1024  # query texts whose vectors are kept (3 KB each at 768-d)


class Encoders:
    """Encoders loaded once per model and shared by every request; one model runs at a time."""

    def __init__(self, device: str = "auto", weights: dict | None = None):
        self.device = device
        self.weights = dict(weights or {})
        self.lock = threading.Lock()  # encoding: torch already uses every core for one query
        self._load_lock = threading.Lock()
        self._loaded: dict[str, tuple] = {}  # name -> (encoder, has image tower)
        self._texts: OrderedDict = OrderedDict()  # (model, text) -> vector, least recently used first
        self._texts_lock = threading.Lock()  # the cache only: a lookup never waits for a model to load

    def photo_ready(self, name: str) -> bool:
        """Whether the model's image tower is loaded (a photo search then does not wait for it)."""
        return self._loaded.get(name, (None, False))[1]

    def loaded(self, ms: ModelStore, images: bool):
        from vrec.search.query import load_encoder

        enc, full = self._loaded.get(ms.name, (None, False))
        if enc is not None and (full or not images):  # loaded: never wait for another model's load
            return enc
        with self._load_lock:
            enc, full = self._loaded.get(ms.name, (None, False))
            if enc is None or (images and not full):
                enc = load_encoder(ms, self.weights.get(ms.name), self.device, text_only=not images)
                self._loaded[ms.name] = (enc, images)
            return enc

    def text_vectors(self, ms: ModelStore, texts: list[str]):
        """The texts' vectors, each encoded once per server (the last TEXT_CACHE_SIZE texts are kept):
        a person refining filters, paging back or changing k asks the same text again, and encoding
        is nearly all of a text query's time."""
        keys = [(ms.name, t) for t in texts]
        with self._texts_lock:
            found = {k: self._texts[k] for k in keys if k in self._texts}
            for k in found:
                self._texts.move_to_end(k)
        missing = [t for _, t in dict.fromkeys(k for k in keys if k not in found)]
        if missing:
            enc = self.loaded(ms, images=False)
            with self.lock:
                rows = enc.encode_texts(missing)
            with self._texts_lock:
                for t, row in zip(missing, rows):
                    found[(ms.name, t)] = self._texts[(ms.name, t)] = row
                while len(self._texts) > TEXT_CACHE_SIZE:
                    self._texts.popitem(last=False)
        import numpy as np

        return np.stack([found[k] for k in keys])

    def for_model(self, ms: ModelStore) -> "SharedEncoder":
        return SharedEncoder(self, ms)


class SharedEncoder:
    """What vrec.search needs of an encoder, loading the shared one on first use (the text tower
    alone until a photo needs the image tower) and encoding under the shared lock."""

    def __init__(self, pool: Encoders, ms: ModelStore):
        self.pool, self.ms = pool, ms

    @property
    def entry(self):
        from vrec.models.registry import resolve

        return resolve(self.ms.name)

    name = property(lambda self: self.ms.name)
    preprocess_spec = property(lambda self: self.entry.preprocess)

    def encode_texts(self, texts: Sequence[str]):
        from vrec.models.encoder_base import no_text_tower

        if not self.entry.text:  # say so before loading anything
            raise no_text_tower(self.ms.name)
        return self.pool.text_vectors(self.ms, list(texts))

    def encode_images(self, images):
        enc = self.pool.loaded(self.ms, images=True)
        with self.pool.lock:
            return enc.encode_images(images)

    @property
    def logit_scale(self):
        return self.pool.loaded(self.ms, images=False).logit_scale

    @property
    def logit_bias(self):
        return self.pool.loaded(self.ms, images=False).logit_bias


def has_text_tower(name: str) -> bool:
    from vrec.models.registry import resolve

    try:
        return bool(resolve(name).text)
    except VrecError:
        return False


def pick_models(st: Store, model: str | None = None, compare_with: str | None = None) -> tuple[str, str | None]:
    """The search model and the comparison model: the ones named (they must be in the store), else
    siglip (or the first embedded model with a text tower) and cnn (or the first other embedded
    model without one; None when there is none)."""
    have = st.model_names()
    if not have:
        st.info()  # no store at all: that error first
        raise NotEmbedded(f"The store {str(st.path)!r} holds no vectors yet; run 'vrec embed FOLDER' first.")
    if model is None:
        model = "siglip" if "siglip" in have else next((m for m in have if has_text_tower(m)), have[0])
    else:
        st.model(model)  # NotEmbedded, with the models it has
    if compare_with is None:
        others = [m for m in have if m != model]
        compare_with = "cnn" if "cnn" in others else next((m for m in others if not has_text_tower(m)), None)
    else:
        if compare_with == model:
            raise VrecError(f"--compare-with names the search model {model!r}; name another model to compare with.")
        st.model(compare_with)
    return model, compare_with
