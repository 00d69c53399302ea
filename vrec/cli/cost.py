"""``vrec cost``."""
