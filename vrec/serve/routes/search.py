"""Searches: by text, by an uploaded photo (steered by text), the facets of results, and the server's health."""
import re
import time
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile

from vrec.base.errors import QueryError, UnknownItem, check_number
from vrec.ingest.crop import CROP_HELP, CROP_PATTERN, parse_crop
from vrec.ingest.crop import crop as crop_region
from vrec.search.facets import MAX_VALUES
from vrec.search.facets import facets as run_facets
from vrec.search.facets import to_dict as facets_dict
from vrec.search.hybrid import search_text as run_text
from vrec.search.query import search_image as run_image
from vrec.serve.middleware import TooLarge
from vrec.serve.routes import FILTERS, PRODUCT_SCORE_HELP, check_k, given, k_query, model_query, product_score_query, service
from vrec.serve.schemas import DEFAULT_K, ERRORS, MAX_K, UPLOAD_ERRORS, FacetsAnswer, Health, ProductScore, SearchAnswer
from vrec.serve.service import Service
from vrec.serve.thumbnails import THUMB_SIZE

router = APIRouter()
Mode = Literal["vector", "keyword", "hybrid"]  # vrec.search.hybrid.MODES
MODE_HELP = ("vector (the model's text tower), keyword (the catalog's words: titles, brands, ids), or hybrid (both, "
             "fused by reciprocal rank); default: hybrid when the store has a keyword index ('vrec index'), else vector.")


@router.get("/api/health", summary="Models, items, index state and version", response_model=Health,
            responses={k: v for k, v in ERRORS.items() if k in (400, 405, 503)})
def health(svc: Service = Depends(service)):
    return svc.health()


@router.get("/api/search/text", summary="Items that match a text", response_model=SearchAnswer, responses=ERRORS)
def search_text(q: str = Query(..., min_length=1, max_length=1000, description="What to look for, in plain words."),
                k: int = k_query(),
                model: str | None = model_query("Model with a text tower (default: the server's)."),
                filters: list[str] = FILTERS, product_score: ProductScore | None = product_score_query(),
                mode: Mode | None = Query(None, description=MODE_HELP),
                keyword_weight: float | None = Query(
                    None, description="Hybrid: blend the legs' scores as (1-w) vector + w keyword, 0 to 1 "
                                      "(default: reciprocal rank fusion).", json_schema_extra={"minimum": 0, "maximum": 1}),
                svc: Service = Depends(service)):
    check_k(k)
    if keyword_weight is not None:  # named as the API names it (the library's message names the CLI's option)
        check_number("keyword_weight", keyword_weight, min=0, max=1)
    snap = svc.snap()
    model = svc.check_model(snap, model)
    t = time.perf_counter()
    result = run_text(q, k=k, model=model, store=snap, mode=mode, keyword_weight=keyword_weight,
                      filters=given(filters), encoder=svc.encoders.for_model(snap.model(model)),
                      product_score=svc.scoring(product_score))
    return svc.results(result, "text", k, time.perf_counter() - t, snap)


@router.post("/api/search/image", summary="Items that look like an uploaded photo, optionally steered by text",
             response_model=SearchAnswer, responses=UPLOAD_ERRORS)
def search_image(file: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, ...)."),
                 plus: list[str] = Form([], description="Text to add to the query; repeatable."),
                 minus: list[str] = Form([], description="Text to subtract from the query; repeatable."),
                 weight: float = Form(1.0, description="Weight of each plus/minus text, 0 to 10.",
                                     json_schema_extra={"minimum": 0, "maximum": 10}),
                 k: int = Form(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}.",
                             json_schema_extra={"minimum": 1, "maximum": MAX_K}),
                 model: str | None = Form(None, description="Model to search (default: the server's)."),
                 filters: list[str] = Form([], alias="filter", description="Metadata filters; repeatable."),
                 product_score: ProductScore | None = Form(None, description=PRODUCT_SCORE_HELP),
                 crop: str | None = Form(None, description=CROP_HELP, pattern=CROP_PATTERN),
                 svc: Service = Depends(service)):
    check_k(k)
    check_steering(plus, minus)
    box = parse_crop(crop)
    snap = svc.snap()
    model = svc.check_model(snap, model)
    name = upload_name(file.filename)
    encoder = svc.encoders.for_model(snap.model(model))
    t = time.perf_counter()
    photo = svc.decodes.upload(lambda: read_upload(file, svc.max_upload), encoder.preprocess_spec.decode_size,
                               name)  # in a decode slot, reduced to what the model needs
    photo_id = svc.uploads.keep(name, photo)  # the whole photo: a later search may choose another region
    return photo_search(svc, snap, name, photo, photo_id, t, k, model, filters, plus, minus, weight, product_score,
                        box)


@router.get("/api/search/photo/{photo_id}", summary="A photo search again, on a photo uploaded a while ago",
            description="The server keeps the last 32 uploaded photos for 30 minutes (in memory): a photo "
                        "search's photo_id names one. Unknown or expired: 404 (upload the photo again).",
            response_model=SearchAnswer, responses=ERRORS)
def search_photo(photo_id: str, k: int = k_query(),
                 model: str | None = model_query("Model to search (default: the server's)."),
                 filters: list[str] = FILTERS, product_score: ProductScore | None = product_score_query(),
                 plus: list[str] = Query([], description="Text to add to the query; repeatable."),
                 minus: list[str] = Query([], description="Text to subtract from the query; repeatable."),
                 weight: float = Query(1.0, description="Weight of each plus/minus text, 0 to 10.",
                                       json_schema_extra={"minimum": 0, "maximum": 10}),
                 crop: str | None = Query(None, description=CROP_HELP, pattern=CROP_PATTERN),
                 svc: Service = Depends(service)):
    check_k(k)
    check_steering(plus, minus)
    box = parse_crop(crop)
    kept = kept_upload(svc, photo_id)
    snap = svc.snap()
    model = svc.check_model(snap, model)
    return photo_search(svc, snap, kept[0], kept[1], photo_id, time.perf_counter(), k, model, filters, plus, minus,
                        weight, product_score, box)


@router.get("/api/search/photo/{photo_id}/image", summary="A kept uploaded photo, as a JPEG (for the page's query)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}, "description": "The photo."},
                                                **ERRORS})
def kept_photo(photo_id: str, svc: Service = Depends(service)):
    kept = kept_upload(svc, photo_id)
    return Response(jpeg(kept[1], THUMB_SIZE), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=1800"})


def kept_upload(svc: Service, photo_id: str):
    """(name, picture) of a kept upload; UnknownItem (404) when it is unknown or expired."""
    kept = svc.uploads.get(photo_id)
    if kept is None:
        raise UnknownItem("That uploaded photo is no longer kept (the server keeps the last 32 for 30 minutes, "
                          "until it stops); upload it again.")
    return kept


def jpeg(picture, size: int) -> bytes:
    """A picture shrunk to ``size`` pixels on its longest side, as JPEG bytes."""
    import io

    small = picture.copy()
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def photo_search(svc: Service, snap, name: str, photo, photo_id: str, started: float, k: int, model: str,
                 filters, plus, minus, weight, product_score, box=None) -> dict:
    """A photo search's answer (on the region ``box`` of the photo, when given), with the id its photo is kept under."""
    result = run_image(name, k=k, model=model, store=snap, filters=given(filters), plus=[p for p in plus if p.strip()],
                       minus=[m for m in minus if m.strip()], weight=weight,
                       encoder=svc.encoders.for_model(snap.model(model)), image=crop_region(photo, box),
                       product_score=svc.scoring(product_score))
    return {**svc.results(result, "image", k, time.perf_counter() - started, snap), "photo_id": photo_id}


@router.get("/api/facets", summary="What results (or the whole catalog) hold, column by column, to narrow them by",
            description="Without q: the whole catalog after the filters. With q: the top k results of a text search "
                        "(kind=text), of the items similar to the catalog item q (kind=similar) or of a photo search "
                        "on the uploaded photo whose photo_id is q (kind=photo, with its crop), after the filters. "
                        "Categorical columns (few distinct, short values) list their values with counts, most common "
                        "first; numeric columns give their range and a histogram. Counts are of products in a "
                        "catalog of products. Each value and bucket carries the filter= expression(s) selecting it.",
            response_model=FacetsAnswer, responses=ERRORS)
def facets(q: str | None = Query(None, max_length=1000, description="A text (kind=text), a catalog item id "
                                 "(kind=similar) or an uploaded photo's photo_id (kind=photo) whose results are "
                                 "counted; absent or blank: the whole catalog."),
           kind: Literal["text", "similar", "photo"] = Query("text", description="What q is: a text, an item id, or "
                                                                               "a kept photo's id."),
           crop: str | None = Query(None, description=CROP_HELP + " (kind=photo)", pattern=CROP_PATTERN),
           k: int = k_query("Results counted when q is given"),
           model: str | None = model_query("Model whose results are counted (default: the server's)."),
           filters: list[str] = FILTERS, product_score: ProductScore | None = product_score_query(),
           mode: Mode | None = Query(None, description="kind=text: the text search's mode, as for /api/search/text: "
                                                       + MODE_HELP),
           max_values: int = Query(MAX_VALUES, description="Values listed per categorical column, 1 to 1000.",
                                   json_schema_extra={"minimum": 1, "maximum": 1000}),
           svc: Service = Depends(service)):
    check_k(k)
    check_number("max_values", max_values, min=1, max=1000, integer=True)
    snap = svc.snap()
    model = svc.check_model(snap, model)
    box = parse_crop(crop)
    q = q if q is not None and q.strip() else None
    if q is not None and kind == "similar":
        q = str(snap.table(model)["id"].iloc[svc.resolve(snap, model, q)])
    image = None
    if q is not None and kind == "photo":
        q, image = kept_upload(svc, q)
        image = crop_region(image, box)
    t = time.perf_counter()
    encoder = svc.encoders.for_model(snap.model(model)) if q is not None and kind != "similar" else None
    result = run_facets(snap, model, q=q, kind=kind, filters=given(filters), k=k, max_values=max_values,
                        encoder=encoder, product_score=svc.scoring(product_score), image=image, mode=mode)
    took = time.perf_counter() - t
    return {**facets_dict(result), "took_ms": round(took * 1000, 2),
            "notes": (svc.notes(snap, model) if q is not None else []) + list(result.notes)}


MAX_STEERING = 20  # plus/minus texts in one request
MAX_TEXT = 1000  # characters of one text, as for q


def check_steering(plus: list[str], minus: list[str]) -> None:
    if len(plus) + len(minus) > MAX_STEERING:
        raise QueryError(f"At most {MAX_STEERING} plus and minus texts together (got {len(plus) + len(minus)}).")
    long = next((s for s in (*plus, *minus) if len(s) > MAX_TEXT), None)
    if long is not None:
        raise QueryError(f"A plus or minus text is {len(long):,} characters long; keep each to {MAX_TEXT:,}.")


def read_upload(file, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge()
    return data


def upload_name(filename: str | None) -> str:
    """The uploaded file's base name, for the result's query label (never used as a path)."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    return name[:120] or "uploaded photo"
