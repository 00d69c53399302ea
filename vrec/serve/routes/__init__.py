"""The routes of ``vrec serve``, one router per concern: the page, searches, items (similar, compare,
thumbnails, galleries) and the A/B experiment. Each route parses its request, calls one library
function and answers with a model from ``vrec.serve.schemas``; what the routes share is the app's
``Service`` (``service``, a FastAPI dependency)."""
from fastapi import Query, Request

from vrec.base.errors import check_number
from vrec.serve.schemas import DEFAULT_K, MAX_K
from vrec.serve.service import Service


def service(request: Request) -> Service:
    """The app's Service: the live store, the encoders, the settings (``app.state.vrec``)."""
    return request.app.state.vrec


def k_query(what: str = "Number of results"):
    """``k``: its range is in the OpenAPI document and checked by ``check_k`` (whose error names it)."""
    return Query(DEFAULT_K, description=f"{what}, 1 to {MAX_K}.", json_schema_extra={"minimum": 1, "maximum": MAX_K})


def check_k(k: int) -> int:
    check_number("k", k, min=1, max=MAX_K, integer=True)
    return k


def model_query(what: str):
    return Query(None, description=what + " One of the models the store holds (see /api/health).")


PRODUCT_SCORE_HELP = ("How a product of several photos is scored: mean (its photos' mean vector), max (its "
                      "best-matching photo) or main (its main photo only); default: the server's --product-score. "
                      "Ignored when every item is one photo.")


def product_score_query():
    return Query(None, description=PRODUCT_SCORE_HELP)


FILTERS = Query([], alias="filter", description="Metadata filter such as category=bags or price<200; repeat to combine.")


def given(filters: list[str]) -> list[str]:
    """The filters a request gives: an empty filter field (a form left blank) is no filter."""
    return [f for f in filters if f.strip()]
