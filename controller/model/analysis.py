"""Canary analysis settings: what a ``canaryComparison`` gate compares, and reusable templates.

A gate declares (or leaves to inference from the table's live columns) its key columns, its
window column and length, and per metric column a statistic with a threshold and a minimum sample
size (``CanaryAnalysis``). An Environment may declare ``analysisTemplates`` once
(``AnalysisTemplate``: the same fields, where a value may be ``{{args.NAME}}``) that a gate
references by name with arguments (``TemplateRef``). ``resolve_template`` substitutes the
arguments; the result is validated as a ``CanaryAnalysis``. The statistics themselves are in
``controller.rollout.statistics``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from controller.model import identifiers as ids
from controller.model.analysis_providers import ProviderMetric, TemplateProviderMetric
from controller.model.base import ResourceName, Spec, parse_duration

DEFAULT_WINDOW_LENGTH = "1m"
DEFAULT_MIN_SAMPLES = 3


def _column(v: str) -> str:
    try:
        return ids.check_hive_ident(v, "column")
    except ids.IdentifierError as e:
        raise ValueError(str(e)) from None


class Statistic(StrEnum):
    RELATIVE_TOTAL = "relativeTotal"
    MANN_WHITNEY_U = "mannWhitneyU"
    KOLMOGOROV_SMIRNOV = "kolmogorovSmirnov"
    QUANTILE_SHIFT = "quantileShift"


class KsCriterion(StrEnum):
    P_VALUE = "pValue"
    D = "d"


class CanaryWindow(Spec):
    column: str = Field(description="The timestamp column holding each row's window start.")
    length: str = Field(default=DEFAULT_WINDOW_LENGTH, description="Length of one window, e.g. 1m, 5m.")

    @field_validator("column")
    @classmethod
    def _col(cls, v: str) -> str:
        return _column(v)

    @field_validator("length")
    @classmethod
    def _length(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError("window length must be > 0")
        return v

    @property
    def seconds(self) -> float:
        return parse_duration(self.length)


class CanaryMetric(Spec):
    """One compared column. Samples are per (keys, window) values: the column's mean over the
    group's rows (weighted by ``weight`` when set); ``relativeTotal`` compares the column's sums."""

    column: str
    statistic: Statistic = Statistic.RELATIVE_TOTAL
    threshold: float | None = Field(
        default=None,
        ge=0,
        description="relativeTotal/quantileShift: largest allowed |relative difference| (default: the "
        "gate's tolerance); mannWhitneyU and kolmogorovSmirnov with criterion pValue: fail when the "
        "p-value is below it (default: the gate's alpha); kolmogorovSmirnov with criterion d: fail "
        "when the D statistic is above it (required).",
    )
    min_samples: int = Field(
        default=DEFAULT_MIN_SAMPLES,
        ge=1,
        description="Fewer (keys, window) values than this on a side (relativeTotal: on the "
        "baseline) is inconclusive.",
    )
    quantile: float = Field(default=0.95, gt=0, lt=1, description="quantileShift: the compared quantile.")
    criterion: KsCriterion = Field(
        default=KsCriterion.P_VALUE, description="kolmogorovSmirnov: judge the p-value or the D statistic."
    )
    weight: str | None = Field(
        default=None, description="A column holding each row's sample count: the group mean is weighted."
    )

    @field_validator("column", "weight")
    @classmethod
    def _cols(cls, v: str | None) -> str | None:
        return None if v is None else _column(v)

    @model_validator(mode="after")
    def _d_needs_threshold(self) -> CanaryMetric:
        if (
            self.statistic is Statistic.KOLMOGOROV_SMIRNOV
            and self.criterion is KsCriterion.D
            and self.threshold is None
        ):
            raise ValueError("kolmogorovSmirnov with criterion d needs a threshold (the largest allowed D)")
        if self.threshold is not None and self.threshold > 1 and self._is_p_value():
            raise ValueError(f"a p-value threshold must be <= 1 (got {self.threshold})")
        return self

    def _is_p_value(self) -> bool:
        return self.statistic is Statistic.MANN_WHITNEY_U or (
            self.statistic is Statistic.KOLMOGOROV_SMIRNOV and self.criterion is KsCriterion.P_VALUE
        )


class CanaryAnalysis(Spec):
    """The comparison settings of a canaryComparison gate (inline, or a resolved template).

    ``None`` for keys, window or metrics means: inferred from the live columns of the table.
    """

    keys: list[str] | None = Field(default=None, description="Key columns; default: inferred.")
    window: CanaryWindow | None = Field(
        default=None, description="Window column and length; default: inferred."
    )
    metrics: list[CanaryMetric] | None = Field(default=None, min_length=1, description="Default: inferred.")
    providers: list[ProviderMetric] | None = Field(
        default=None,
        min_length=1,
        description="Prometheus queries and Kafka lag compared canary vs baseline "
        "(controller.model.analysis_providers).",
    )
    tolerance: float = Field(default=0.02, ge=0, le=1)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    min_closed_windows: int = Field(default=3, gt=0)

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_column(k) for k in v]

    @property
    def declared(self) -> bool:
        return self.keys is not None or self.window is not None or self.metrics is not None


# --- templates ------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")
ArgValue = str | int | float | bool


class TemplateArg(Spec):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    value: ArgValue | None = Field(
        default=None, description="Default value; without it the argument is required."
    )


class TemplateWindow(Spec):
    column: str
    length: str = DEFAULT_WINDOW_LENGTH


class TemplateMetric(Spec):
    """``CanaryMetric`` before argument substitution (any value may be ``{{args.NAME}}``)."""

    column: str
    statistic: str = Statistic.RELATIVE_TOTAL.value
    threshold: float | str | None = None
    min_samples: int | str = DEFAULT_MIN_SAMPLES
    quantile: float | str = 0.95
    criterion: str = KsCriterion.P_VALUE.value
    weight: str | None = None


class AnalysisTemplate(Spec):
    """A named ``CanaryAnalysis`` with arguments (Argo Rollouts' AnalysisTemplate, for tables)."""

    name: ResourceName
    args: list[TemplateArg] = Field(default_factory=list)
    keys: list[str] | None = None
    window: TemplateWindow | None = None
    metrics: list[TemplateMetric] | None = Field(default=None, min_length=1)
    providers: list[TemplateProviderMetric] | None = Field(default=None, min_length=1)
    tolerance: float | str | None = None
    alpha: float | str | None = None
    min_closed_windows: int | str | None = None

    @model_validator(mode="after")
    def _placeholders_are_args(self) -> AnalysisTemplate:
        names = [a.name for a in self.args]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate argument(s) {', '.join(dupes)}")
        unknown = sorted(set(placeholders(self.body())) - set(names))
        if unknown:
            raise ValueError(
                f"{{{{args.{unknown[0]}}}}} names no argument of the template (declared: "
                f"{', '.join(names) or 'none'})"
            )
        return self

    def body(self) -> dict[str, Any]:
        """The template's analysis fields as written (camelCase), without name and args."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"name", "args"})


class TemplateRef(Spec):
    name: str = Field(description="An analysisTemplates entry of the stage's Environment.")
    args: dict[str, ArgValue] = Field(default_factory=dict, description="Argument name → value.")


class TemplateError(ValueError):
    """A template reference that cannot be resolved; ``field`` is the path under ``template``."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def placeholders(value: Any) -> list[str]:
    """Every argument name used as ``{{args.NAME}}`` anywhere in ``value``."""
    if isinstance(value, str):
        return _PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in placeholders(v)]
    if isinstance(value, list):
        return [n for v in value for n in placeholders(v)]
    return []


def _substitute(value: Any, args: dict[str, ArgValue]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value.strip())
        if whole:  # a value that is only a placeholder takes the argument's type (a number stays one)
            return args[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(args[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _substitute(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, args) for v in value]
    return value


def resolve_template(template: AnalysisTemplate, ref: TemplateRef) -> CanaryAnalysis:
    """The template's analysis with ``ref``'s arguments (and the template's defaults) substituted.

    Raises ``TemplateError`` for an unknown or missing argument, or a substituted value that is
    not valid (``field`` then names the template's field, e.g. ``metrics[0].threshold``).
    """
    declared = {a.name: a for a in template.args}
    for name in sorted(ref.args):
        if name not in declared:
            raise TemplateError(
                f"args.{name}",
                f"analysis template {template.name!r} has no argument {name!r} "
                f"(declared: {', '.join(declared) or 'none'})",
            )
    values: dict[str, ArgValue] = {}
    for name, arg in declared.items():
        if name in ref.args:
            values[name] = ref.args[name]
        elif arg.value is not None:
            values[name] = arg.value
        else:
            raise TemplateError("args", f"missing argument {name!r} of analysis template {template.name!r}")
    try:
        return CanaryAnalysis.model_validate(_substitute(template.body(), values))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise TemplateError(
            where, f"analysis template {template.name!r} with these arguments: {where}: {msg}"
        ) from None


def find_template(templates: list[AnalysisTemplate], name: str) -> AnalysisTemplate | None:
    return next((t for t in templates if t.name == name), None)


# --- the gate's fields ----------------------------------------------------------------------

_ANALYSIS_FIELDS = {
    "tolerance": "tolerance",
    "alpha": "alpha",
    "min_closed_windows": "minClosedWindows",
    "keys": "keys",
    "window": "window",
    "metrics": "metrics",
    "providers": "providers",
}


class CanaryGateFields(Spec):
    """The comparison fields of ``manifest.CanaryComparisonGate``: inline settings, or a template."""

    tolerance: float = Field(
        default=0.02, ge=0, le=1, description="Default relativeTotal/quantileShift threshold."
    )
    alpha: float = Field(default=0.01, gt=0, lt=1, description="Default p-value threshold.")
    min_closed_windows: int = Field(default=3, gt=0)
    keys: list[str] | None = Field(default=None, description="Key columns; default: inferred.")
    window: CanaryWindow | None = Field(
        default=None, description="Window column and length; default: inferred."
    )
    metrics: list[CanaryMetric] | None = Field(default=None, min_length=1, description="Default: inferred.")
    providers: list[ProviderMetric] | None = Field(
        default=None,
        min_length=1,
        description="Prometheus queries and Kafka lag compared canary vs baseline "
        "(controller.model.analysis_providers).",
    )
    template: TemplateRef | None = Field(
        default=None, description="Use an analysisTemplates entry of the stage's Environment instead."
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_column(k) for k in v]

    @model_validator(mode="after")
    def _template_alone(self) -> CanaryGateFields:
        if self.template is not None:
            inline = sorted(_ANALYSIS_FIELDS[f] for f in self.model_fields_set & set(_ANALYSIS_FIELDS))
            if inline:
                raise ValueError(
                    f"a gate with a template takes {', '.join(inline)} from the template; remove them here"
                )
        return self

    def analysis(self, templates: list[AnalysisTemplate]) -> CanaryAnalysis:
        """The effective settings at a stage whose Environment declares ``templates``.

        Raises ``TemplateError`` when the template is unknown or its arguments do not fit.
        """
        if self.template is None:
            return CanaryAnalysis(
                keys=self.keys,
                window=self.window,
                metrics=self.metrics,
                providers=self.providers,
                tolerance=self.tolerance,
                alpha=self.alpha,
                min_closed_windows=self.min_closed_windows,
            )
        found = find_template(templates, self.template.name)
        if found is None:
            known = ", ".join(t.name for t in templates) or "none"
            raise TemplateError("name", f"unknown analysis template {self.template.name!r} (known: {known})")
        return resolve_template(found, self.template)
