"""Model-name rewrites: InferenceModelRewrite rules on the way in, the name back on the way out.

On the way in, :class:`RewriteTable` finds the rule for the requested model and
:func:`pick_target` draws its target by weight (the director applies it). On the way out,
when ``model`` was rewritten (``x-llm-d-model-name-rewrite`` / ``x-gateway-model-name-rewrite``
or an InferenceModelRewrite), the server answers with the target name; clients expect their own.
Upstream's rule (``rewriteModelName``): a byte replace of ``"model":"<target>"``, and only if
that changed nothing, of ``"model": "<target>"`` (one space). A byte replace, not a JSON
round trip, so stream chunks pass at memcpy cost.
"""

from __future__ import annotations

import random

from endpoint_picker.api.rewrite import InferenceModelRewrite, InferenceModelRewriteRule


def rewrite_model_name(body_chunk: bytes, target: str, incoming: str) -> bytes:
    """Replace the target model name with the incoming one in a response body chunk."""
    if not target or not incoming or target == incoming:
        return body_chunk
    t, i = target.encode(), incoming.encode()
    compact = b'"model":"' + t + b'"'
    if compact in body_chunk:
        return body_chunk.replace(compact, b'"model":"' + i + b'"')
    spaced = b'"model": "' + t + b'"'
    if spaced in body_chunk:
        return body_chunk.replace(spaced, b'"model": "' + i + b'"')
    return body_chunk


class RewriteTable:
    """The InferenceModelRewrites of one pool, and which rule a requested model gets.

    Upstream's precedence (``modelRewriteStore``): a rule with an Exact match on the model beats
    a rule without matches; among several, the oldest rewrite (creation time, then name) wins,
    then the first rule in its list. The table is rebuilt on each change (rare) so a lookup is
    one dict access and, at most, one more list index: nothing per request but the draw.
    """

    def __init__(self) -> None:
        self._rewrites: dict[str, InferenceModelRewrite] = {}
        self._exact: dict[str, tuple[str, InferenceModelRewriteRule]] = {}
        self._generic: tuple[str, InferenceModelRewriteRule] | None = None

    def set(self, rewrite: InferenceModelRewrite) -> None:
        self._rewrites[rewrite.metadata.name] = rewrite
        self._rebuild()

    def delete(self, name: str) -> bool:
        found = self._rewrites.pop(name, None) is not None
        if found:
            self._rebuild()
        return found

    def get(self, name: str) -> InferenceModelRewrite | None:
        return self._rewrites.get(name)

    def all(self) -> list[InferenceModelRewrite]:
        return list(self._rewrites.values())

    def clear(self) -> None:
        self._rewrites.clear()
        self._rebuild()

    def rule_for(self, model: str) -> tuple[str, InferenceModelRewriteRule] | None:
        """(rewrite name, rule) for a requested model, or None."""
        return self._exact.get(model) or self._generic

    def _rebuild(self) -> None:
        exact: dict[str, tuple[str, InferenceModelRewriteRule]] = {}
        generic: tuple[str, InferenceModelRewriteRule] | None = None
        for rw in sorted(self._rewrites.values(), key=_age):
            for rule in rw.spec.rules:
                if not rule.matches:
                    generic = generic or (rw.metadata.name, rule)
                    continue
                for match in rule.matches:
                    exact.setdefault(match.model.value, (rw.metadata.name, rule))
        self._exact, self._generic = exact, generic


def _age(rw: InferenceModelRewrite) -> tuple[float, str]:
    created = rw.metadata.creation_timestamp
    return (created.timestamp() if created is not None else float("inf"), rw.metadata.name)


def pick_target(rule: InferenceModelRewriteRule, rng: random.Random | None = None) -> str:
    """A target model drawn by weight (upstream's ``selectWeightedModel``); unset weights are
    0, and all-zero splits evenly. A rule without targets leaves the model as it is ("")."""
    targets = rule.targets or []
    if not targets:
        return ""
    draw = rng or random
    weights = [t.weight or 0 for t in targets]
    total = sum(weights)
    if total == 0:
        return targets[draw.randrange(len(targets))].model_rewrite
    point = draw.randrange(total)
    for target, weight in zip(targets, weights, strict=True):
        point -= weight
        if point < 0:
            return target.model_rewrite
    return targets[-1].model_rewrite  # not reached
