"""The A/B experiment's route: the unit's arm's similar items, each list shown logged (``vrec serve
--experiment``). In the OpenAPI document only when the server runs an experiment."""
import time

from fastapi import APIRouter, Depends, Query

from vrec.base.errors import QueryError
from vrec.serve.routes import check_k, k_query, service
from vrec.serve.schemas import ERRORS, RecommendAnswer
from vrec.serve.service import Service

router = APIRouter()


@router.get("/api/recommend/{item_id:path}", summary="A/B experiment: the unit's arm's similar items (logged)",
            response_model=RecommendAnswer, responses=ERRORS)
def recommend(item_id: str,
              unit: str = Query(..., min_length=1, description="The unit of the experiment: a user or session id."),
              k: int = k_query(), svc: Service = Depends(service)):
    if svc.experiment is None:
        raise QueryError("This server runs no experiment; start it with vrec serve --experiment NAME "
                         "--arms cnn,siglip to serve /api/recommend.")
    check_k(k)
    snap = svc.snap()
    t = time.perf_counter()
    rec = svc.experiment.recommend(item_id, unit, k=k, store=snap)
    result = rec.pop("result")
    return {**rec, **svc.results(result, "recommend", k, time.perf_counter() - t, snap)}
