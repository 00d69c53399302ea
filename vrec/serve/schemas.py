"""The JSON contract of ``vrec serve``: a pydantic model for every request and answer.

These models are what ``/openapi.json`` (and so ``/docs``) shows; the routes build their answers
from the library's plain records (``vrec.serve.service``) and declare them here, so the document
and the server cannot drift apart without ``tests/test_serve_contract.py`` (schemathesis) noticing.
Metadata columns are the catalog's own, so an item's ``metadata`` is an open object.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000  # results per request: a catalog-sized answer would be megabytes of JSON
DEFAULT_K = 12
ProductScore = Literal["mean", "max", "main"]  # vrec.store.products.SCORINGS


class ErrorAnswer(BaseModel):
    """Every error: one sentence saying what went wrong and what to do."""

    error: str = Field(description="What went wrong and what to do next, in one sentence.")


class Result(BaseModel):
    """One result of a search, a similar-items list or one side of a comparison."""

    rank: int = Field(ge=1)
    id: str = Field(description="The item's id (a path without extension, e.g. bags/tote-01).")
    score: float | None = Field(description="Cosine similarity of the query and the item (1 = same direction).")
    probability: float | None = Field(
        None, description="For text queries on SigLIP-type models, the model's own match probability.")
    thumb: str = Field(description="The item's photo, resized: GET this path.")
    title: str | None = Field(description="The item's title from its metadata, if it has one.")
    metadata: dict[str, Any] = Field(description="The item's product metadata (the catalog's own columns) and tags.")
    photo: str | None = Field(
        None, description="In a catalog of products: the id of the product's photo that matched best "
                          "(PRODUCT/POSITION), the one ``thumb`` shows; null otherwise.")
    photos: int | None = Field(
        None, description="In a catalog of products: how many photos the product has; null otherwise.")
    found_by: Literal["vector", "keyword", "both", "exact"] | None = Field(
        None, description="Keyword and hybrid text search: which leg found the result -- vector (the model), "
                          "keyword (the catalog's words), both, or exact (its id, SKU or GTIN is the query); "
                          "null in a vector search.")


class Item(BaseModel):
    """One catalog item (in a catalog of products, a product: ``thumb`` is its main photo)."""

    id: str
    thumb: str
    width: int | None
    height: int | None
    title: str | None
    metadata: dict[str, Any]
    photos: int | None = Field(
        None, description="In a catalog of products: how many photos the product has; null otherwise.")
    photo_ids: list[str] = Field(
        default_factory=list, description="In a catalog of products: the product's photos, main photo first "
                                          "(each shown by /thumb/PHOTO_ID); empty otherwise.")


class SearchAnswer(BaseModel):
    """Results of a text search, a photo search or a similar-items request."""

    kind: str = Field(description="text, image, similar or recommend.")
    query: str
    model: str
    k: int
    took_ms: float
    notes: list[str] = Field(description="What the user should know about these results (e.g. a stale index).")
    results: list[Result]
    photo_id: str | None = Field(None, description="A photo search's uploaded photo, kept for a while: "
                                 "GET /api/search/photo/{photo_id} runs the search again (e.g. from the page's "
                                 "address /?photo=ID).")


class RecommendAnswer(SearchAnswer):
    """An A/B experiment's recommendation: the unit's arm's similar items, as logged."""

    time: str
    experiment: str
    unit: str
    arm: str
    item: str
    shown: list[str]


class CompareSide(BaseModel):
    model: str
    results: list[Result]
    agreement: float | None = Field(
        None, description="With label=COLUMN: the share of the k neighbours holding the item's value of that column "
                          "(as vrec compare --label counts it); null without a label, or when the item has no value "
                          "or one no other (matching) item has.")


class LabelAgreement(BaseModel):
    """One label value's items in the summary, and each model's mean agreement over them."""

    value: str
    items: int
    left: float
    right: float


class CompareSummary(BaseModel):
    """Catalog-wide figures (summary=true), as vrec compare prints them: over every item matching the filters,
    or a seeded sample of 20,000 in a larger catalog."""

    items: int = Field(description="Items summarised.")
    k: int
    mean_overlap: float = Field(description="Mean share of neighbours the two models have in common.")
    label: str | None
    labelled: int | None = Field(description="Items in the label agreement: those whose value another item shares.")
    left_agreement: float | None = Field(description="The left model's mean label agreement; null without a label "
                                                     "or when no item has a value another shares.")
    right_agreement: float | None
    sampled: bool
    per_label: list[LabelAgreement] | None = Field(description="Per label value, most items first; null without a label.")


class CompareAnswer(BaseModel):
    """Two models' neighbours of one item, side by side."""

    id: str
    item: Item
    left: CompareSide
    right: CompareSide
    overlap: float = Field(description="Share of neighbours the two models have in common.")
    shared: list[str] = Field(description="Ids found by both models.")
    k: int
    notes: list[str]
    filters: list[str] = Field([], description="The filters both models' neighbours were restricted to.")
    label: str | None = Field(None, description="The label column of the agreement figures, if one was asked.")
    label_value: str | None = Field(None, description="The item's value of the label column.")
    summary: CompareSummary | None = Field(None, description="Catalog-wide figures, when summary=true.")


class FacetValue(BaseModel):
    """One value of a categorical column and how many results hold it."""

    value: str
    count: int = Field(ge=0, description="Results (products, in a catalog of products) holding this value.")
    selected: bool = Field(description="Whether the request's filters already select this value.")
    filter: str | None = Field(description="The filter= expression selecting this value (e.g. category=bags, "
                                           "tag:red); null when the column's name cannot be written in a filter.")


class CategoricalFacet(BaseModel):
    """A metadata column of few distinct values: its values in the results, most common first."""

    column: str
    values: list[FacetValue] = Field(description="At most max_values values, most common first.")
    distinct: int = Field(ge=0, description="Distinct values in the results.")
    other: int = Field(ge=0, description="Results whose value is not among ``values`` (beyond max_values).")
    missing: int = Field(ge=0, description="Results without a value.")


class FacetBucket(BaseModel):
    """One bucket of a numeric column's histogram: min <= value < max (the last one: value <= max)."""

    min: float
    max: float
    count: int = Field(ge=0)
    filters: list[str] = Field(description="The two filter= expressions selecting the bucket (price>=100, "
                                           "price<200); empty when the column's name cannot be written in a filter.")


class NumericFacet(BaseModel):
    """A numeric metadata column (e.g. price): its range in the results and a histogram with round edges."""

    column: str
    min: float | None = Field(description="Smallest value in the results; null when none has a value.")
    max: float | None
    missing: int = Field(ge=0, description="Results without a value.")
    buckets: list[FacetBucket]
    selected_min: float | None = Field(None, description="The lower bound the request's filters set (>, >=), if any.")
    selected_max: float | None = Field(None, description="The upper bound the request's filters set (<, <=), if any.")


class FacetsAnswer(BaseModel):
    """Facets of a search's results, or of the whole catalog: what to narrow the results by."""

    model: str
    query: str | None = Field(description="The text (item id, or photo name) whose results are counted; null: the whole catalog.")
    kind: str | None = Field(description="text, similar or photo; null for the whole catalog.")
    items: int = Field(ge=0, description="Results counted (items, or products in a catalog of products), after "
                                         "the filters.")
    catalog: int = Field(ge=0, description="Items (products) in the catalog.")
    filters: list[str] = Field(description="The filters applied.")
    categorical: list[CategoricalFacet]
    numeric: list[NumericFacet]
    took_ms: float
    notes: list[str]


class ModelState(BaseModel):
    name: str
    dim: int
    items: int
    text: bool = Field(description="Whether the model can search by text.")
    index: str | None = Field(description="State of its HNSW index (e.g. fresh, stale, none).")
    photo_ready: bool = Field(False, description="Whether its photo (image) tower is loaded; while false, the first "
                                                 "photo search waits for it to load (the server loads it in the "
                                                 "background after the text tower).")


class KeywordState(BaseModel):
    columns: list[str] = Field(description="The metadata columns whose words keyword search looks in.")
    documents: int = Field(ge=0, description="Items (products) in the keyword index.")


class Health(BaseModel):
    """What the server holds: models, items, index state and version."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    items: int
    default_model: str
    compare_with: str | None
    models: list[ModelState]
    filters: list[str] = Field(description="Metadata columns a filter= may name.")
    token_required: bool
    photos: int | None = Field(
        None, description="When the catalog holds products of several photos: how many photos (``items`` counts "
                          "products); null otherwise.")
    product_score: ProductScore | None = Field(
        None, description="How a product of several photos is scored when a request does not say (mean, max or "
                          "main); null when the catalog holds no such products.")
    keywords: KeywordState | None = Field(
        None, description="The store's keyword index ('vrec index'): text search's mode is then hybrid by default "
                          "and keyword and hybrid can be asked for; null when it has none (or one to rebuild).")
    text_mode: Literal["vector", "hybrid"] = Field(
        "vector", description="The mode of a text search that names none: hybrid with a keyword index, else vector.")


class GalleryResult(BaseModel):
    id: str = Field(min_length=1)
    score: float
    photo: str | None = Field(None, description="The product's photo to show (a result's ``photo``); default: "
                                                "its main photo.")


class GalleryRequest(BaseModel):
    """Results to save as a self-contained HTML page."""

    title: str | None = Field(None, max_length=200)
    query: str | None = Field(None, max_length=200)
    model: str | None = None
    results: list[GalleryResult] = Field(min_length=1, max_length=500)


# --- curated collections (vrec.search.collections) ---

COLLECTION_NAME = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]([A-Za-z0-9_ -]*[A-Za-z0-9_-])?$",
                        description="Letters, digits, '-', '_' and spaces (not first nor last), at most 80 characters.")


class CollectionQuery(BaseModel):
    """What a collection was made from: a text, a catalog item or a photo, with its model, filters and k."""

    kind: Literal["text", "image", "item"]
    text: str | None = Field(None, description="The text (kind text).")
    item: str | None = Field(None, description="The catalog item id (kind item): items similar to it.")
    image: str | None = Field(None, description="The photo's file name (kind image, made on the command line).")
    model: str
    filters: list[str]
    k: int = Field(description="How many results the query brings in (and a refresh looks at).")


class CollectionItemIn(BaseModel):
    """One item of an edited collection, in the collection's order."""

    id: str = Field(min_length=1, max_length=1000, description="A catalog id (a product's, in a catalog of products).")
    pinned: bool = False
    note: str = Field("", max_length=2000)


class CollectionItem(CollectionItemIn):
    """One item of a collection, with what the page shows of it."""

    added: str = Field(description="When it came into the collection (ISO 8601).")
    title: str | None = Field(description="The item's title from its metadata; null when it has none (or the "
                                          "store no longer holds it).")
    thumb: str = Field(description="The item's photo, resized: GET this path.")
    available: bool = Field(description="Whether the store still holds the item (a refresh drops it when not).")


class Collection(BaseModel):
    """A curated collection: its query, its items in order, the ids it keeps out, who saved it and its version."""

    name: str
    query: CollectionQuery
    items: list[CollectionItem]
    removed: list[str] = Field(description="Ids taken out by hand: a refresh does not bring them back.")
    created: str
    updated: str
    by: str = Field(description="Who saved it last.")
    version: int = Field(ge=1, description="Send it back with an edit (PUT): a save over a newer version is a 409.")


class CollectionSummary(BaseModel):
    name: str
    items: int
    pinned: int
    query: CollectionQuery
    updated: str
    by: str
    version: int


class CollectionList(BaseModel):
    collections: list[CollectionSummary]


class CollectionCreate(BaseModel):
    """A new collection from a query: exactly one of ``text`` and ``item``."""

    name: str = COLLECTION_NAME
    text: str | None = Field(None, min_length=1, max_length=1000, description="Items that match this text.")
    item: str | None = Field(None, min_length=1, max_length=1000, description="Items similar to this catalog item.")
    model: str | None = Field(None, description="Model to search (default: the server's).")
    filters: list[str] = Field([], max_length=20, description="Metadata filters such as category=bags.")
    k: int = Field(24, ge=1, le=1000, description="How many results to bring in.")
    by: str | None = Field(None, max_length=200, description="Who makes it (default: the server's user).")


class CollectionEdit(BaseModel):
    """The whole edited collection: its items in order (pins and notes with them), the removed ids, and the
    version it was loaded at."""

    version: int = Field(ge=1, description="The version the edits start from (the collection's ``version``).")
    items: list[CollectionItemIn] = Field(max_length=1000)
    removed: list[str] | None = Field(None, max_length=10_000, description="Ids a refresh must not bring back "
                                                                          "(default: as saved).")
    by: str | None = Field(None, max_length=200, description="Who edits (default: the server's user).")


class Deleted(BaseModel):
    deleted: str = Field(description="The name of the collection deleted.")


class RefreshAnswer(BaseModel):
    """A refreshed (and saved) collection, the ids it gained and those that left the store."""

    collection: Collection
    new: list[str]
    gone: list[str]
    notes: list[str]


# the error answers each kind of route can give, for the OpenAPI document
ERRORS = {
    400: {"model": ErrorAnswer, "description": "A parameter is invalid (one sentence says which and why)."},
    401: {"model": ErrorAnswer, "description": "This server needs its token."},
    404: {"model": ErrorAnswer, "description": "No such item."},
    405: {"model": ErrorAnswer, "description": "Method not allowed (the Allow header lists those that are)."},
    503: {"model": ErrorAnswer, "description": "The store is missing or the model cannot be loaded."},
}
UPLOAD_ERRORS = {**ERRORS, 413: {"model": ErrorAnswer, "description": "The upload is over the server's limit."}}
COLLECTION_ERRORS = {**ERRORS, 404: {"model": ErrorAnswer, "description": "No such collection or item."},
                     409: {"model": ErrorAnswer, "description": "The collection was saved by someone else since "
                                                               "it was loaded (reload it), or the name is taken."}}
