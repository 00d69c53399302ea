"""vrec eval's new options given wrong input by a user: each is one clear error saying what to do."""
from __future__ import annotations

from clihelp import fails


def test_an_unknown_language_column_lists_the_text_columns_there_are(shared_tiny_store):
    line = fails("eval", "--models", "tiny-siglip", "--language-columns", "en=title,sv=titel",
                 "--store", shared_tiny_store, says="No column 'titel'")
    assert "Name a text column it has:" in line and "title" in line and "category" in line
    assert "hash" not in line and "path" not in line  # vrec's own columns are no language's text
