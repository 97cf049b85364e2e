"""The unit table: canonical unit, accepted alternatives and their factors, per quantity.

Everything here is a whitelist. A unit that is not listed is rejected, never guessed (a U vs mU
mix-up in vasopressin is a 1000x error, multiplied by 10,000 in the VIS). Each listed unit is
accepted in every valid UCUM spelling: the liter as l or L (liter_spellings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class UnitRule:
    factor: float
    """Multiply the given value by this to get the canonical unit."""
    per_weight: bool = False
    """True when the unit is per patient (e.g. ug/min): divide by body weight in kg as well."""


_RATE_UG = {
    "ug/kg/min": UnitRule(1.0),
    "mcg/kg/min": UnitRule(1.0),
    "ug/min": UnitRule(1.0, per_weight=True),
    "mcg/min": UnitRule(1.0, per_weight=True),
    "mg/h": UnitRule(1000.0 / 60.0, per_weight=True),
}
_RATE_VASOPRESSIN = {
    "U/kg/min": UnitRule(1.0),
    "[U]/kg/min": UnitRule(1.0),
    "U/min": UnitRule(1.0, per_weight=True),
    "[U]/min": UnitRule(1.0, per_weight=True),
    "U/h": UnitRule(1.0 / 60.0, per_weight=True),
    "[U]/h": UnitRule(1.0 / 60.0, per_weight=True),
    "mU/kg/min": UnitRule(1.0 / 1000.0),
    "m[U]/kg/min": UnitRule(1.0 / 1000.0),
    "mU/min": UnitRule(1.0 / 1000.0, per_weight=True),
    "m[U]/min": UnitRule(1.0 / 1000.0, per_weight=True),
}

# quantity -> (canonical unit, {accepted unit: rule})
UNITS: dict[str, tuple[str, dict[str, UnitRule]]] = {
    "lactate": (
        "mmol/L",
        {"mmol/L": UnitRule(1.0), "mg/dL": UnitRule(1.0 / 9.008), "umol/L": UnitRule(1.0 / 1000.0)},
    ),
    "catecholamine_rate": ("ug/kg/min", _RATE_UG),
    "vasopressin_rate": ("U/kg/min", _RATE_VASOPRESSIN),
    "body_weight": (
        "kg",
        {"kg": UnitRule(1.0), "[lb_av]": UnitRule(0.4536), "lb": UnitRule(0.4536)},
    ),
    "platelets": (
        "10*9/L",
        {
            "10*9/L": UnitRule(1.0),
            "10*3/uL": UnitRule(1.0),
            "/nL": UnitRule(1.0),
            # Not UCUM ("K" is kelvin there) but what many lab systems print; an explicit synonym.
            "K/uL": UnitRule(1.0),
            "/uL": UnitRule(1.0 / 1000.0),
        },
    ),
    "ffp_volume": ("mL", {"mL": UnitRule(1.0), "L": UnitRule(1000.0)}),
}

IMPLAUSIBLE_BELOW: dict[str, float] = {
    # A platelet count under 1 x10^9/L (including 0) is not a measurement but a unit slip:
    # 80 "/uL" meant 80 x10^9/L becomes 0.08.
    "platelets": 1.0,
}
"""quantity -> the canonical value below which no unit makes the value plausible: refused."""

UNIT_SLIP_CHECKED = frozenset({"lactate", "platelets"})
"""Quantities whose accepted units differ by a factor that a slip turns into a still-numeric but
wrong value (lactate mg/dL vs mmol/L: 9x; platelets /uL vs 10*3/uL: 1000x). A value below the
usual range (or outside the hard bounds) that another accepted unit would make usual is refused,
naming that unit. Rates are not checked: their usual range starts at 0, so every slip to a
smaller unit looks usual."""

# UCUM is case-sensitive, with one exception that matters here: the liter has two symbols, "l" and
# "L" (UCUM 4.3, table 3 "liter": l and L, the same unit), so mmol/l, ml, 10*9/l and /ul are the
# units listed above, spelt the other valid way. A UCUM library (ucumvert 0.3, which brings pint
# and lark) would accept every convertible unit, which this whitelist must not do (U vs mU); the
# one spelling rule it would add is this one, so it is written here once for every path (JSON API,
# OIP, CDS: they all call UnitTable.rule).
_LITER = re.compile(r"(?<![A-Za-z\[])([munpcd]?)L(?![A-Za-z\]])")
"""A liter atom (with an optional prefix) not inside a bracketed or longer atom."""


def liter_spellings(unit: str) -> set[str]:
    """Every spelling of unit with each liter written l or L."""
    parts = _LITER.split(unit)  # text, prefix, text, prefix, ... (each L dropped)
    spellings = {parts[0]}
    for i in range(1, len(parts), 2):
        prefix, rest = parts[i], parts[i + 1]
        spellings = {f"{s}{prefix}{liter}{rest}" for s in spellings for liter in ("L", "l")}
    return spellings


_LOOKUP: dict[str, dict[str, UnitRule]] = {
    quantity: {spelling: rule for unit, rule in table.items() for spelling in liter_spellings(unit)}
    for quantity, (_, table) in UNITS.items()
}
"""Accepted unit -> rule, with every UCUM spelling of the liter (what rule() looks up)."""

FFP_UNIT_CODES = ("{unit}", "[iU]", "unit", "units")
"""FFP given in bags: accepted only when ECMO_FFP_ML_PER_UNIT is configured."""


@dataclass(frozen=True)
class UnitTable:
    """The unit whitelist with the site's settings bound (create_app builds one from Settings).

    ffp_ml_per_unit: mL per bag of fresh frozen plasma (ECMO_FFP_ML_PER_UNIT); without it, FFP
    given in units is refused.
    """

    ffp_ml_per_unit: float | None = None

    def accepted(self, quantity: str) -> list[str]:
        units = list(UNITS[quantity][1])
        if quantity == "ffp_volume" and self.ffp_ml_per_unit:
            units.extend(FFP_UNIT_CODES)
        return units

    def rule(self, quantity: str, unit: str) -> UnitRule | None:
        rule = _LOOKUP[quantity].get(unit)
        if (
            rule is None
            and quantity == "ffp_volume"
            and self.ffp_ml_per_unit
            and unit in FFP_UNIT_CODES
        ):
            return UnitRule(self.ffp_ml_per_unit)
        return rule

    def hint(self, quantity: str) -> str:
        """Why a unit may be missing from accepted() on this site ("" when nothing to say)."""
        if quantity == "ffp_volume" and not self.ffp_ml_per_unit:
            return " (FFP in units needs ECMO_FFP_ML_PER_UNIT configured)"
        return ""

    def per_patient_free(self, quantity: str) -> list[str]:
        """The accepted units that need no body weight to convert."""
        return [u for u, r in UNITS[quantity][1].items() if not r.per_weight]


DEFAULT_UNITS = UnitTable()
"""No site settings: what training and the mapping-file checks use."""
