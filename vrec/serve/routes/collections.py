"""Curated collections: list, create from a query, read, save an edited one (checked against its
version: 409 when someone saved it meanwhile), delete, refresh and export (HTML, CSV, JSON).
Each route calls one function of ``vrec.search.collections``."""
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from vrec.report import pages
from vrec.search import collections as lib
from vrec.serve.routes import service
from vrec.serve.schemas import (
    COLLECTION_ERRORS,
    Collection,
    CollectionCreate,
    CollectionEdit,
    CollectionList,
    Deleted,
    RefreshAnswer,
)
from vrec.serve.service import Service, collection_record, collection_summary

router = APIRouter()
MEDIA = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8", "json": "application/json"}


def _encoder(svc: Service, snap, model: str):
    """The server's loaded text encoder for a text query's model (None for an item's query: no model needed)."""
    from vrec.serve.encoder_pool import has_text_tower

    return svc.encoders.for_model(snap.model(model)) if has_text_tower(model) else None


@router.get("/api/collections", summary="The store's curated collections", response_model=CollectionList,
            responses=COLLECTION_ERRORS)
def list_all(svc: Service = Depends(service)):
    snap = svc.snap()
    return {"collections": [collection_summary(c) for c in lib.list_collections(snap)]}


@router.post("/api/collections", summary="A new collection from a text or a catalog item's similar items",
             response_model=Collection, responses=COLLECTION_ERRORS)
def create(body: CollectionCreate, svc: Service = Depends(service)):
    snap = svc.snap()
    model = svc.check_model(snap, body.model)
    item = None
    if body.item is not None:
        item = str(snap.table(model)["id"].iloc[svc.resolve(snap, model, body.item)])
    query = lib.make_query(text=body.text, item=item, model=model, filters=body.filters, k=body.k)
    c = lib.create(snap, body.name, query, by=body.by,
                   encoder=_encoder(svc, snap, model) if query.kind == "text" else None)
    return collection_record(snap, c)


@router.get("/api/collections/{name}", summary="One collection", response_model=Collection,
            responses=COLLECTION_ERRORS)
def read(name: str, svc: Service = Depends(service)):
    snap = svc.snap()
    return collection_record(snap, lib.load(snap, name))


@router.put("/api/collections/{name}", summary="Save an edited collection (pins, order, notes, removed ids)",
            description="Send the whole edited collection with the ``version`` it was loaded at; when someone "
                        "saved it since, the answer is a 409 and nothing is saved: reload it and edit again.",
            response_model=Collection, responses=COLLECTION_ERRORS)
def edit(name: str, body: CollectionEdit, svc: Service = Depends(service)):
    snap = svc.snap()
    c = lib.update(snap, name, [i.model_dump() for i in body.items], body.removed, body.version, by=body.by)
    return collection_record(snap, c)


@router.delete("/api/collections/{name}", summary="Delete a collection", response_model=Deleted,
               responses=COLLECTION_ERRORS)
def delete(name: str, svc: Service = Depends(service)):
    lib.delete(svc.snap(), name)
    return {"deleted": name}


@router.post("/api/collections/{name}/refresh", summary="Run the collection's query again and save",
             description="Items still in the store stay where they are (pinned or not), removed ones stay out, "
                         "new matches are appended (``new``), items the store no longer holds leave (``gone``).",
             response_model=RefreshAnswer, responses=COLLECTION_ERRORS)
def refresh(name: str, svc: Service = Depends(service)):
    snap = svc.snap()
    c = lib.load(snap, name)
    svc.check_model(snap, c.query.model)
    r = lib.refresh_saved(snap, name, encoder=_encoder(svc, snap, c.query.model) if c.query.kind == "text" else None)
    return {"collection": collection_record(snap, r.collection), "new": r.new, "gone": r.gone, "notes": r.notes}


@router.get("/api/collections/{name}/export", summary="A collection as a file: HTML page, CSV or JSON for a CMS",
            response_class=Response,
            responses={200: {"content": {"text/html": {}, "text/csv": {}, "application/json": {}},
                             "description": "The file, named after the collection (Content-Disposition)."},
                       **COLLECTION_ERRORS})
def export(name: str, format: Literal["html", "csv", "json"] = Query("html", description="html, csv or json."),
           svc: Service = Depends(service)):
    snap = svc.snap()
    c = lib.load(snap, name)
    text = pages.collection_file(format, c, lib.export_table(snap, c), lib.catalog_root(snap))
    filename = lib.file_name(c.name, "." + format)
    return Response(text, media_type=MEDIA[format], headers={"Content-Disposition": f'attachment; filename="{filename}"'})
