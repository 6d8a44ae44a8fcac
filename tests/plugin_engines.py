"""Engines a recipe names by path in tests/test_registry.py (`plugin_engines:Counting`): subclasses
of the transformers engine that override `generate`, as a user's plug-in would."""

from __future__ import annotations

from cord.engines.transformers import TransformersEngine


class Counting(TransformersEngine):
    """Counts the calls cord makes to it, then generates as the transformers engine does."""

    calls = 0

    def generate(self, requests):
        type(self).calls += 1
        return super().generate(requests)


class TooFew(TransformersEngine):
    """Drops the last completion of every call: a plug-in that breaks the contract."""

    def generate(self, requests):
        return super().generate(requests)[:-1]
