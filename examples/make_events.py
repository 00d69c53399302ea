"""Write examples/events.csv: a simulated A/B test of SigLIP against the CNN, with a known effect.

8,000 users, assigned by vrec's own salted hash (experiment "similar-items-siglip", arms
cnn,siglip, 50/50), each with the "similar items" impressions, clicks and orders of the test
period, plus their clicks in the four weeks before it (pre_clicks, for CUPED).

The truth built in: each user has an activity level and a click propensity (some users see and
click far more than others, the same before and during the test); SigLIP multiplies every user's click probability by 1.10, so the
true relative lift in click-through rate (clicks / impressions) is exactly +10%, and in clicks per
user +10% too. An order follows a click with the same probability in both arms (8%), so orders per
user also rise by 10%. Run: python examples/make_events.py (deterministic: seed 2025).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vrec.experiments.ab import assign_many  # noqa: E402

USERS = 8000
EXPERIMENT = "similar-items-siglip"
TRUE_LIFT = 0.10  # SigLIP's relative lift in click probability
BASE_CTR = 0.04
ORDER_PER_CLICK = 0.08


def simulate(users: int = USERS, seed: int = 2025) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"u{i:05d}" for i in range(users)]
    arm = assign_many(ids, EXPERIMENT, ["cnn", "siglip"], "50/50")
    propensity = rng.gamma(shape=2.0, scale=0.5, size=users)  # mean 1: heavy clickers and light ones
    ctr = np.minimum(BASE_CTR * propensity * np.where(arm == "siglip", 1 + TRUE_LIFT, 1.0), 1.0)
    activity = rng.gamma(2.0, 12.0, users)  # lists a user sees in four weeks: the same habit before and during
    impressions = rng.poisson(activity) + 1
    clicks = rng.binomial(impressions, ctr)
    orders = rng.binomial(clicks, ORDER_PER_CLICK)
    pre_impressions = rng.poisson(activity) + 1
    pre_clicks = rng.binomial(pre_impressions, np.minimum(BASE_CTR * propensity, 1.0))  # same user, no treatment
    return pd.DataFrame({"user": ids, "arm": arm, "impressions": impressions, "clicks": clicks, "orders": orders,
                         "pre_clicks": pre_clicks})


if __name__ == "__main__":
    out = HERE / "events.csv"
    simulate().to_csv(out, index=False)
    print(f"wrote {out}")
