"""Spec fields declared once: name, default, bounds, choices and help, for the parser and the CRD.

A scalar field of the WhoisCrawl spec is a dataclass field whose metadata holds a Knob. The
parser (spec.py) reads and checks it from the Knob, the CRD (crd.py) writes its schema from the
same Knob, so a bound, a choice or a default can never differ between the two. A field that is a
crawl knob of the settings contract (whoiscrawl/settings.py) takes its Knob from that Setting
(`setting_knob`), so the CLI, the local crawl and the CRD share one default, bound and help.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whoiscrawl.settings import SETTINGS

KNOB = "whoiscrawl.knob"
KINDS = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclass(frozen=True)
class Knob:
    """One scalar spec field as both the CRD and the parser read it."""

    key: str  # its name in the CRD (camelCase)
    kind: str  # integer, number, boolean or string
    lo: float | None = None  # inclusive minimum
    hi: float | None = None  # inclusive maximum
    above: float | None = None  # exclusive minimum
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    hint: str = ""  # what a value matching `pattern` looks like, for the parser's message
    check: Callable[[str], str | None] | None = None  # the parser's own check, instead of `pattern`
    required: bool = False
    immutable: str = ""  # its path in messages, when `self == oldSelf` (the crawl's data is there)
    desc: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with a present value, None if nothing."""
        wrong = self._type_problem(value)
        if wrong or self.kind == "boolean":
            return wrong
        if self.kind == "string":
            return self._string_problem(value)
        if self.lo is not None and value < self.lo:
            return f"must be >= {_num(self.lo)}, got {value}"
        if self.hi is not None and value > self.hi:
            return f"must be <= {_num(self.hi)}, got {value}"
        if self.above is not None and value <= self.above:
            return f"must be > {_num(self.above)}, got {value}"
        return None

    def _type_problem(self, value: Any) -> str | None:
        expected = {"integer": (int,), "number": (int, float), "boolean": (bool,),
                    "string": (str,)}[self.kind]
        if isinstance(value, bool) != (self.kind == "boolean") or not isinstance(value, expected):
            noun = {"integer": "an integer", "number": "a number", "boolean": "true or false",
                    "string": "a string"}[self.kind]
            return f"must be {noun}, got {value!r}"
        if self.kind == "number" and value != value:  # NaN
            return f"must be a number, got {value!r}"
        return None

    def _string_problem(self, value: str) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        if self.check is not None:
            return self.check(value)
        if self.pattern is not None and not re.search(self.pattern, value):
            return f"must be {self.hint or 'of the form ' + self.pattern}, got {value!r}"
        return None

    def schema(self, default: Any) -> dict[str, Any]:
        """This field's OpenAPI schema in the CRD."""
        out: dict[str, Any] = {"type": self.kind}
        if self.desc:
            out["description"] = self.desc
        if default is not None:
            out["default"] = default
        for name, value in (("minimum", self.lo), ("maximum", self.hi)):
            if value is not None:
                out[name] = value
        if self.above is not None:
            out |= {"minimum": self.above, "exclusiveMinimum": True}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.pattern:
            out["pattern"] = self.pattern
        if self.immutable:
            out["x-kubernetes-validations"] = [unchanged_rule(self.immutable)]
        return out


def unchanged_rule(path: str) -> dict[str, str]:
    """A CEL transition rule: changing this mid-crawl would orphan the crawl's data."""
    return {"rule": "self == oldSelf",
            "message": f"{path} cannot change once set (the crawl's data lives there): "
                       "delete and recreate the crawl"}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def knob(key: str, default: Any = None, *, kind: str | None = None, **options: Any) -> Any:
    """A dataclass field carrying its Knob; `kind` follows the default's type unless given."""
    spec = Knob(key, kind or KINDS[type(default)], **options)
    if spec.required:
        return dataclasses.field(metadata={KNOB: spec})
    return dataclasses.field(default=default, metadata={KNOB: spec})


def setting_knob(name: str) -> Any:
    """A spec field for a crawl knob of the settings contract: key (camelCase), default, bounds,
    choices and help all the Setting's."""
    setting = SETTINGS[name]
    key = setting.name.split("_")[0] + "".join(w.title() for w in setting.name.split("_")[1:])
    return knob(key, setting.default, lo=setting.lo, hi=setting.hi, choices=setting.choices,
                desc=setting.help)


def knobs(cls: type) -> list[tuple[str, Knob, Any]]:
    """(attribute, Knob, default) of each declared scalar field of a spec dataclass, in order."""
    out = []
    for f in dataclasses.fields(cls):
        if KNOB in f.metadata:
            default = None if f.default is dataclasses.MISSING else f.default
            out.append((f.name, f.metadata[KNOB], default))
    return out


def properties(cls: type, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CRD properties of a spec dataclass's declared fields (defaults overridable by attribute)."""
    given = defaults or {}
    return {k.key: k.schema(given.get(attr, default)) for attr, k, default in knobs(cls)}
