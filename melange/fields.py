"""Field types of the file schemas (pydantic): sizes bounded so that absurd numbers are one-line
errors before any work, and the CLI's units parser (melange/units.py) for file fields too."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from melange.errors import MelangeError
from melange.units import parse_duration, parse_fraction, parse_rate

MAX_RATE = 1e6  # req/s: far beyond any fleet the simulator or a profile can describe
MAX_INSTANCES = 10_000  # instances of one type a scenario may force (min_count)
MAX_TOKENS = 10_000_000  # bucket edges, context and batch sizes: beyond any model (and int64-safe)
MAX_STEP_S = 60.0  # a step-time coefficient above a minute is a unit mistake, not a GPU
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
StepCoef = Annotated[float, Field(ge=0, le=MAX_STEP_S)]


def _units(parse, numbers: bool = False):
    """A file field that also takes the CLI's unit strings ('100ms', '16/s', '99%'): one parser.
    `numbers`: bare numbers go through it too (a percentage's 10 is ambiguous, as on the CLI)."""
    def check(value):
        if isinstance(value, str) or (numbers and isinstance(value, (int, float)) and not isinstance(value, bool)):
            try:
                return parse(value)
            except MelangeError as exc:
                raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value
    return BeforeValidator(check)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Table = list[list[NonNegFloat]]
Millis = Annotated[float, Field(gt=0), _units(lambda v: parse_duration(v, "", bare="ms") * 1e3)]
Seconds = Annotated[float, Field(ge=0), _units(lambda v: parse_duration(v, "", bare="s", allow_zero=True))]
Fraction = Annotated[float, _units(lambda v: parse_fraction(v, ""), numbers=True)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE), _units(lambda v: parse_rate(v, ""))]
