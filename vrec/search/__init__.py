"""Questions asked of a store: text and photo search, CNN-vs-SigLIP comparison, exports for
recommenders, zero-shot tags and the style map."""
