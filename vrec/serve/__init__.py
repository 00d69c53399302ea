"""``vrec serve``: the web page and JSON API over the library (FastAPI), with the long-lived
process's parts: live store snapshots, a pool of loaded encoders, thumbnails."""
