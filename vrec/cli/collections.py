"""``vrec collection``: curated collections kept in the store (list, show, create, export, delete)."""
from __future__ import annotations

import typer

from vrec.cli.common import FilterOpt, FormatTableJsonOpt, StoreOpt, app, check_format, err, out, print_notes

collection_app = typer.Typer(help="Curated collections kept in the store: list, show, create, export, delete.",
                             no_args_is_help=True)
app.add_typer(collection_app, name="collection")

NameArg = typer.Argument(..., help="The collection's name (letters, digits, '-', '_', spaces; quote it).")


@collection_app.command("list")
def list_(store: str | None = StoreOpt, fmt: str = FormatTableJsonOpt) -> None:
    """List the store's collections: items, pins, query, when and by whom each was saved."""
    import json

    from vrec.report.render import collection_dict, collections_table
    from vrec.search.collections import list_collections

    check_format(fmt, ("table", "json"))
    found = list_collections(store)
    if fmt == "json":
        print(json.dumps([collection_dict(c) for c in found], indent=2, ensure_ascii=False))
    elif not found:
        err.print("No collections yet; make one with vrec collection create NAME --text \"...\".", highlight=False)
    else:
        out.print(collections_table(found))


@collection_app.command("show")
def show(name: str = NameArg, store: str | None = StoreOpt, fmt: str = FormatTableJsonOpt) -> None:
    """Show a collection's items in order: pinned, id, title, note."""
    from vrec.search.collections import load

    check_format(fmt, ("table", "json"))
    show_collection(store, load(store, name), fmt)


@collection_app.command("create")
def create(
    name: str = NameArg,
    text: str | None = typer.Option(None, "--text", help="Start from the items that match this text."),
    item: str | None = typer.Option(None, "--item", help="Start from the items similar to this catalog item."),
    image: str | None = typer.Option(None, "--image", help="Start from the items that look like this photo."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model to search (a text tower for --text)."),
    k: int = typer.Option(24, "--k", "-k", help="How many results to bring in, 1 to 1000."),
    filter: list[str] | None = FilterOpt,
    by: str | None = typer.Option(None, "--by", help="Who makes it [default: your user name]."),
    store: str | None = StoreOpt,
    fmt: str = FormatTableJsonOpt,
) -> None:
    """Make a collection from a text, a catalog item or a photo, and save it in the store."""
    from vrec.search.collections import create as run
    from vrec.search.collections import make_query

    check_format(fmt, ("table", "json"))
    show_collection(store, run(store, name, make_query(text=text, item=item, image=image, model=model,
                                                       filters=filter or (), k=k), by=by), fmt)


@collection_app.command("refresh")
def refresh(name: str = NameArg, by: str | None = typer.Option(None, "--by", help="Who refreshes it."),
            store: str | None = StoreOpt) -> None:
    """Run the collection's query again: items stay where they are, removed ones stay out, new matches are
    appended; prints the new ids."""
    from vrec.search.collections import refresh_saved

    r = refresh_saved(store, name, by=by)
    print_notes(r.notes)
    for i in r.new:
        out.print(i, highlight=False, soft_wrap=True)
    err.print(f"{len(r.new)} new item{'s' if len(r.new) != 1 else ''}; {name!r} is at version "
              f"{r.collection.version}.", highlight=False)


@collection_app.command("export")
def export(name: str = NameArg, path: str = typer.Argument(..., metavar="OUT", help="File to write: .html (a "
                                                           "self-contained page), .csv or .json (ids for a CMS)."),
           store: str | None = StoreOpt) -> None:
    """Write a collection as an HTML page (photos inlined), a CSV or a JSON of its ids, titles, pins and notes."""
    from pathlib import Path

    from vrec.base.files import atomic_path
    from vrec.report.pages import collection_file
    from vrec.search.collections import catalog_root, export_format, export_table, load

    fmt = export_format(path)
    c = load(store, name)
    text = collection_file(fmt, c, export_table(store, c), catalog_root(store))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    err.print(f"wrote {path}", highlight=False)


@collection_app.command("delete")
def delete(name: str = NameArg, store: str | None = StoreOpt) -> None:
    """Delete a collection from the store."""
    from vrec.search.collections import delete as run

    run(store, name)
    err.print(f"deleted the collection {name!r}", highlight=False)


def show_collection(store, c, fmt: str) -> None:
    """A collection's items on stdout: a table, or JSON."""
    from vrec.report.render import collection_json, collection_table
    from vrec.search.collections import export_table

    table = export_table(store, c)
    if fmt == "json":
        print(collection_json(c, table), end="")
    else:
        out.print(collection_table(c, table))
