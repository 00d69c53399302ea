"""Catalog items: one item, its similar items, two models' neighbours side by side, its thumbnail,
and a saved gallery of results."""
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, Response

from vrec.base.errors import QueryError, UnknownItem
from vrec.report import pages
from vrec.search.compare import compare as run_compare
from vrec.search.query import search_image as run_similar
from vrec.serve.routes import FILTERS, check_k, given, k_query, model_query, product_score_query, service
from vrec.serve.schemas import ERRORS, CompareAnswer, GalleryRequest, Item, ProductScore, SearchAnswer
from vrec.serve.service import Service, compare_records, compare_summary, gallery_result, item_record

router = APIRouter()


@router.get("/api/similar/{item_id:path}", summary="Items similar to a catalog item (the item itself excluded)",
            description="In a catalog of products, products similar to a product (also when named by one of its "
                        "photos' ids): the product and its own photos are never among them.",
            response_model=SearchAnswer, responses=ERRORS)
def similar(item_id: str, k: int = k_query(),
            model: str | None = model_query("Model whose neighbours to show (default: the server's)."),
            filters: list[str] = FILTERS, product_score: ProductScore | None = product_score_query(),
            svc: Service = Depends(service)):
    check_k(k)
    snap = svc.snap()
    model = svc.check_model(snap, model)
    pos = svc.resolve(snap, model, item_id)
    full_id = str(snap.table(model)["id"].iloc[pos])
    t = time.perf_counter()
    result = run_similar(full_id, k=k, model=model, store=snap, filters=given(filters),
                         product_score=svc.scoring(product_score))
    return svc.results(result, "similar", k, time.perf_counter() - t, snap)


@router.get("/api/compare/{item_id:path}", summary="Two models' neighbours of an item, side by side",
            response_model=CompareAnswer, responses=ERRORS)
def compare(item_id: str, left: str | None = model_query("Left model (default: the CNN)."),
            right: str | None = model_query("Right model (default: the search model)."),
            k: int = k_query("Neighbours per model"), filters: list[str] = FILTERS,
            label: str | None = Query(None, max_length=200, description="A metadata column (e.g. category): each "
                                      "side's share of neighbours holding the item's value of it."),
            summary: bool = Query(False, description="Add catalog-wide figures: mean overlap and, with label, each "
                                  "model's mean agreement (seconds on a large catalog)."),
            svc: Service = Depends(service)):
    check_k(k)
    snap = svc.snap()
    left = left or svc.compare_with
    right = right or svc.model
    if left is None:
        raise QueryError(f"This server has no model to compare with; pass left=MODEL (the store has "
                         f"{', '.join(snap.model_names())}) or start vrec serve with --compare-with.")
    left, right = svc.check_model(snap, left), svc.check_model(snap, right)
    pos = svc.resolve(snap, right, item_id)
    full_id = str(snap.table(right)["id"].iloc[pos])
    if snap.position(left, full_id) is None:
        raise UnknownItem(f"{full_id!r} has no {left} vector; embed the catalog with --model {left} to compare it.")
    label = label if label is not None and label.strip() else None
    c = run_compare([full_id], left=left, right=right, k=k, store=snap, summary=summary, label=label,
                    filters=given(filters))
    q = c.queries[0]
    sides = {side: {"model": s.model, "results": compare_records(snap, s.model, s.table, full_id),
                    "agreement": agreement}
             for side, s, agreement in (("left", q.left, q.left_agreement), ("right", q.right, q.right_agreement))}
    shared = [str(i) for i, common in zip(q.left.table["id"], q.left.table["common"]) if common] \
        if len(q.left.table) else []
    return {"id": full_id, "item": item_record(snap.table(right).iloc[pos]), **sides,
            "overlap": float(q.overlap), "shared": shared, "k": int(c.k), "notes": list(c.notes),
            "filters": list(c.filters), "label": label, "label_value": q.label,
            "summary": compare_summary(c.summary)}


@router.get("/api/items/{item_id:path}", summary="One catalog item", response_model=Item, responses=ERRORS)
def item(item_id: str, svc: Service = Depends(service)):
    snap = svc.snap()
    pos = svc.resolve(snap, svc.model, item_id)
    return {**item_record(snap.table(svc.model).iloc[pos]), "photo_ids": svc.photo_ids(snap, pos)}


@router.get("/thumb/{item_id:path}", summary="A catalog item's photo, resized (longest side 384 px)",
            description="ID is an item's id (in a catalog of products, a product's: its main photo) or a photo's id "
                        "(PRODUCT/POSITION, a result's photo). Photos behind URLs are served from this machine's "
                        "photo cache, never downloaded here: one not cached is a 404.",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}, "description": "The photo."},
                                                **ERRORS})
def thumb(item_id: str, svc: Service = Depends(service)):
    snap = svc.snap()
    models = [svc.model] + [m for m in snap.model_names() if m != svc.model]
    if snap.position(svc.model, item_id) is None and snap.photo_position(svc.model, item_id) is None:
        # a unique ending of an id, as the other routes take
        try:
            item_id = str(snap.table(svc.model)["id"].iloc[svc.resolve(snap, svc.model, item_id)])
        except UnknownItem:
            pass  # perhaps an item of another model only; thumbs.get says when it is none
    data = svc.thumbs.get(snap, models, item_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@router.post("/api/gallery", summary="A self-contained HTML page of results (photos inlined)",
             response_class=HTMLResponse, responses={200: {"content": {"text/html": {}}}, **ERRORS},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/GalleryRequest"}}}}})
def gallery(body: Any = Body(None), svc: Service = Depends(service)):
    # the body is checked by gallery_result (one sentence per mistake); its schema is GalleryRequest
    snap = svc.snap()
    title, result = gallery_result(svc, snap, body)
    html = pages.page(title, pages.search_html(result, Path(str(snap.info().get("root", "")))))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "gallery"
    return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{slug}.html"'})


GALLERY_SCHEMA = GalleryRequest  # registered in the OpenAPI components by vrec.serve.app
