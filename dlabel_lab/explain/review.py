"""A person's review of derived transformation parameters, saved as a params version ``retrain`` takes by id.

Every parameter :meth:`~dlabel_lab.TransformationParams.describe` lists can be
accepted or rejected: one with a value keeps it or is reset to "no change";
a candidate the derivation reported but did not apply (``value`` ``None``)
gains the value its evidence records (:func:`candidate_value`) when accepted.
:func:`review_params` is the pure step; :func:`save_reviewed_params` stores
the result through the store's own versioning of parameters
(``store.save_params``) and records who reviewed what, and when, as a
``params-review`` run in the execution log. ``retrain(store, v,
params="shapes-v1-reviewed-v1")`` then trains with exactly those parameters.

Example:
    >>> p = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1))
    >>> review_params(p, accepted=["noise"]).blur is None
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, UnknownRecord
from ..train.transforms import Evidence, TransformationParams

__all__ = ["REVIEW_RUN", "candidate_quantiles", "candidate_value", "load_params", "params_review", "review_params",
           "reviewable", "save_reviewed_params"]

REVIEW_RUN = "params-review"  #: the execution log's kind for a saved review
_CANDIDATE = re.compile(r"candidate_(\d+)$")


def candidate_quantiles(value: Any) -> dict[str, float]:  # noqa: ANN401 - a tuple or a class -> weight dict
    """How a derivation records, in :attr:`Evidence.quantiles`, the value a parameter would take if accepted.

    Tuples become ``candidate_0``, ``candidate_1``, ...; class weights ``candidate:<class>``.

    Example:
        >>> candidate_quantiles((0.5, 1.2))
        {'candidate_0': 0.5, 'candidate_1': 1.2}
        >>> candidate_quantiles({"circle": 2.0})
        {'candidate:circle': 2.0}
    """
    if isinstance(value, Mapping):
        return {f"candidate:{k}": float(v) for k, v in value.items()}
    return {f"candidate_{i}": float(v) for i, v in enumerate(value)}


def reviewable(params: TransformationParams) -> list[str]:
    """The parameters a person reviews: every row of ``params.describe()`` (set values and reported candidates).

    Example:
        >>> reviewable(TransformationParams(blur=(0.5, 1.0), evidence={"noise": Evidence()}))
        ['blur', 'noise']
    """
    return params.describe()["parameter"].tolist()


def _set_names(params: TransformationParams) -> set[str]:
    described = params.describe()
    return {name for name, value in zip(described["parameter"], described["value"], strict=True) if value is not None}


def candidate_value(params: TransformationParams, name: str) -> Any:  # noqa: ANN401 - a parameter's own type
    """The value ``name`` has if accepted: its own, else the candidate its evidence records; ``None`` when neither.

    A recorded candidate that is not a valid value for the parameter counts as none.

    Example:
        >>> ev = Evidence(quantiles={"candidate_0": 0.0, "candidate_1": 0.05})
        >>> candidate_value(TransformationParams(evidence={"noise": ev}), "noise")
        (0.0, 0.05)
    """
    if name in _set_names(params):
        return getattr(params, name)
    ev = params.evidence.get(name)
    if ev is None:
        return None
    weights = {k.split(":", 1)[1]: v for k, v in ev.quantiles.items() if k.startswith("candidate:")}
    numbered = sorted((int(m.group(1)), v) for k, v in ev.quantiles.items() if (m := _CANDIDATE.match(k)))
    value: Any = weights if name == "class_weights" else tuple(v for _, v in numbered)
    if not value or name == "frame_stride":
        return None
    try:
        return getattr(replace(params, **{name: value}), name)
    except ConfigError:
        return None


def _noted(ev: Evidence, note: str) -> Evidence:
    return replace(ev, note=f"{ev.note}; {note}" if ev.note else note)


def review_params(params: TransformationParams, accepted: Iterable[str], *, author: str | None = None) -> (
        TransformationParams):
    """``params`` as reviewed: the ``accepted`` parameters keep (or gain) their value, the others do not change clips.

    Rejected parameters are reset to "no change" with their evidence kept and
    noted (see :meth:`TransformationParams.reject`; one without evidence gets
    a ``"review"`` evidence, so ``describe()`` still lists it); accepted
    candidates take :func:`candidate_value`. With an ``author`` every
    decision is noted in the evidence ("accepted by ana", "rejected by ana").

    Raises:
        ConfigError: An accepted name is not a reviewable parameter, or an
            accepted candidate has no value to apply.

    Example:
        >>> p = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1))
        >>> r = review_params(p, ["noise"], author="ana")
        >>> r.blur, r.noise
        (None, (0.0, 0.1))
    """
    names = reviewable(params)
    accepted = list(dict.fromkeys(accepted))
    unknown = [n for n in accepted if n not in names]
    if unknown:
        raise ConfigError(f"cannot accept {unknown}: the reviewable parameters are {names}")
    have = _set_names(params)
    gained = {}
    for name in accepted:
        if name not in have:
            value = candidate_value(params, name)
            if value is None:
                raise ConfigError(f"{name!r} has no value to accept: the derivation recorded no candidate "
                                  f"(evidence: {params.evidence[name].note or 'none'}). Reject it.")
            gained[name] = value
    rejected = [n for n in names if n not in accepted]
    rejection = f"rejected by {author}" if author else "rejected by a person"
    out = params.reject([n for n in rejected if n in have], note=rejection)
    evidence = dict(out.evidence)
    for name in rejected:  # a value turned down stays listed by describe(), through its evidence
        if name not in evidence:
            evidence[name] = Evidence(source="review", note=rejection)
    if author:
        for name in names:
            if name in params.evidence and (name in accepted or name not in have):  # reject() noted the others
                evidence[name] = _noted(evidence[name], f"accepted by {author}" if name in accepted else rejection)
    return replace(out, **gained, evidence=evidence)


def save_reviewed_params(store, params: TransformationParams, *, accepted: Iterable[str], author: str,
                         model_version: str | None = None, name: str | None = None) -> str:
    """Store the reviewed parameters as a params version; its id, for ``retrain(store, v, params=<id>)``.

    The parameters go through ``store.save_params`` (versioned, with the
    model version they were derived for and the time); the review (author,
    accepted and rejected names) is a ``params-review`` run of the execution
    log whose result names the version (:func:`params_review` reads it back).

    Args:
        store: The payload store.
        params: The derived parameters, as shown to the reviewer.
        accepted: The names accepted; every other reviewable one is rejected.
        author: Who reviewed.
        model_version: The version the parameters were derived for.
        name: Version name (default ``"<model_version>-reviewed"``).

    Returns:
        The params version id, e.g. ``"shapes-v1-reviewed-v1"``.

    Example:
        >>> pid = save_reviewed_params(store, params, accepted=["scale"], author="ana",
        ...                            model_version="shapes-v1")  # doctest: +SKIP
        >>> retrain(store, "shapes-v1", params=pid)  # doctest: +SKIP
    """
    if not isinstance(author, str) or not author.strip():
        raise ConfigError(f"a review needs an author (who reviewed), got {author!r}")
    accepted = list(dict.fromkeys(accepted))
    reviewed = review_params(params, accepted, author=author)
    rejected = [n for n in reviewable(params) if n not in accepted]
    name = name or (f"{model_version}-reviewed" if model_version else "reviewed")
    run_id = store.start_run(REVIEW_RUN, {"author": author, "accepted": accepted, "rejected": rejected, "name": name},
                             model_version=model_version)
    try:
        version = store.save_params(reviewed, model_version=model_version, name=name)
    except BaseException as error:
        store.finish_run(run_id, status="failed", error=error)
        raise
    store.finish_run(run_id, result={"params_version": version})
    return version


def load_params(store, params_version: str) -> TransformationParams:
    """The transformation parameters saved under ``params_version``.

    Raises:
        UnknownRecord: No such version.

    Example:
        >>> load_params(store, "shapes-v1-reviewed-v1").describe()  # doctest: +SKIP
    """
    return TransformationParams.from_dict(store.get_params(params_version))


def params_review(store, params_version: str) -> dict[str, Any]:
    """Who reviewed ``params_version``, when, and what they accepted and rejected.

    Returns:
        ``params_version``, ``author``, ``accepted``, ``rejected``,
        ``reviewed_at`` (UTC), ``model_version`` and the ``run_id``.

    Raises:
        UnknownRecord: The version was not saved by :func:`save_reviewed_params`.

    Example:
        >>> params_review(store, "shapes-v1-reviewed-v1")["author"]  # doctest: +SKIP
        'ana'
    """
    runs = store.runs(REVIEW_RUN)
    for run in runs[runs["status"] == "ok"].itertuples():
        if json.loads(run.result or "{}").get("params_version") == params_version:
            given = json.loads(run.params)
            return {"params_version": params_version, "author": given["author"], "accepted": given["accepted"],
                    "rejected": given["rejected"], "reviewed_at": run.finished_at,
                    "model_version": run.model_version, "run_id": run.run_id}
    raise UnknownRecord(f"no review saved {params_version!r}; save one with save_reviewed_params()")
