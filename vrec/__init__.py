"""vrec: visual recommendations from SigLIP vision-language embeddings."""
__version__ = "0.1.0"
