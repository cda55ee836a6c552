"""The water budget of one time step, by package, in the MODFLOW manner (rates in m3/s).

Packages: WEL (wells), RCH (recharge), RIV (river leakage), DRN (drains, e.g. seepage at the
ground surface), CHD (fixed heads), STO (storage).
``inflow``/``outflow`` add up the boundary packages; ``storage_change`` is the net rate at which
water goes into storage (positive when heads rise); ``error = inflow - outflow - storage_change``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKAGES = ("WEL", "RCH", "RIV", "DRN", "CHD")


@dataclass(frozen=True)
class Budget:
    """Rates (m3/s) into (``inputs``) and out of (``outputs``) the aquifer per package."""

    time: float
    inputs: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, float] = field(default_factory=dict)
    storage_in: float = 0.0
    storage_out: float = 0.0

    @property
    def inflow(self) -> float:
        """Sum of boundary inflows (m3/s): wells injecting, recharge, river and fixed-head in."""
        return float(sum(self.inputs.get(p, 0.0) for p in PACKAGES))

    @property
    def outflow(self) -> float:
        """Sum of boundary outflows (m3/s, a positive number)."""
        return float(sum(self.outputs.get(p, 0.0) for p in PACKAGES))

    @property
    def storage_change(self) -> float:
        """Net rate of increase of stored water (m3/s); STO-OUT minus STO-IN in MODFLOW terms."""
        return self.storage_out - self.storage_in

    @property
    def error(self) -> float:
        """inflow - outflow - storage_change (m3/s): what the solution fails to conserve."""
        return self.inflow - self.outflow - self.storage_change

    @property
    def total(self) -> float:
        """Mean of all IN and all OUT terms (storage included), MODFLOW's reference for errors."""
        return 0.5 * (self.inflow + self.storage_in + self.outflow + self.storage_out)

    @property
    def relative_error(self) -> float:
        """error / total (MODFLOW's percent discrepancy divided by 100); 0 when nothing flows."""
        total = self.total
        return 0.0 if total == 0.0 else self.error / total

    def row(self) -> dict[str, float]:
        """One flat record: totals, storage and each package's IN and OUT."""
        out = {
            "time": self.time,
            "inflow": self.inflow,
            "outflow": self.outflow,
            "storage_change": self.storage_change,
            "error": self.error,
            "relative_error": self.relative_error,
            "STO_IN": self.storage_in,
            "STO_OUT": self.storage_out,
        }
        for p in PACKAGES:
            out[f"{p}_IN"] = self.inputs.get(p, 0.0)
            out[f"{p}_OUT"] = self.outputs.get(p, 0.0)
        return out
