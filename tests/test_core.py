"""Tests of twin.core: model interface, clock and coupler against closed-form solutions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from twin.core import (
    Clock,
    ClockError,
    Coupler,
    CouplingError,
    Grid,
    Model,
    ModelError,
    ModelStateError,
    UnknownVariableError,
    Variable,
    VariableSpec,
    bind,
)
from twin.errors import TwinError

EPOCH = "2024-06-01T00:00:00Z"

STORAGE = VariableSpec("storage", "m3", "reservoir_water__volume", "scalar", "water stored")
TRANSFER = "reservoir_water__cumulative_transfer_volume"  # what one gives and the other takes


class Reservoir(Model):
    """Linear reservoir: storage V drains at rate*V into a cumulative outflow total.

    The input is the upstream reservoir's cumulative outflow; at the start of each step the
    increment since the previous step is added to V, then V decays exactly over the step.
    """

    INPUTS = (VariableSpec("inflow_total", "m3", TRANSFER, description="upstream outflow total"),)
    OUTPUTS = (
        STORAGE,
        VariableSpec("outflow_total", "m3", TRANSFER, description="water drained so far"),
        VariableSpec("received_total", "m3", "reservoir_water__cumulative_received_volume"),
    )

    def _initialize(self, config):
        self.time_step = config["time_step"]
        self.rate = config["rate"]
        self.volume = config["volume"]
        self.outflow_total = 0.0
        self.inflow_total = 0.0
        self.received_total = 0.0
        self.inputs = bind(self.INPUTS)
        self.outputs = bind(self.OUTPUTS)

    _STATE = ("volume", "outflow_total", "inflow_total", "received_total")

    def _save_state(self):
        return {key: getattr(self, key) for key in self._STATE}

    def _load_state(self, state):
        for key in self._STATE:
            setattr(self, key, state[key])

    def _set_value(self, name, values):
        self.inflow_total = float(values)

    def _get_value(self, name):
        return getattr(self, {"storage": "volume"}.get(name, name))

    def _step(self, dt):
        self.volume += self.inflow_total - self.received_total
        self.received_total = self.inflow_total
        out = -self.volume * math.expm1(-self.rate * dt)
        self.volume -= out
        self.outflow_total += out


class AnalyticDecay(Model):
    """Exponential decay V0*exp(-k t), evaluated exactly at whatever time it is asked to reach."""

    OUTPUTS = (STORAGE, VariableSpec("outflow_total", "m3", TRANSFER))

    def _initialize(self, config):
        self.time_step = config["time_step"]
        self.v0 = config["volume"]
        self.rate = config["rate"]
        self.outputs = bind(self.OUTPUTS)

    def _update_until(self, t):
        pass  # the state is a closed-form function of current_time

    def _save_state(self):
        return {}  # nothing beyond the model time, which the base class saves

    def _load_state(self, state):
        pass

    def _get_value(self, name):
        t = self.current_time
        if name == "storage":
            return self.v0 * math.exp(-self.rate * t)
        return -self.v0 * math.expm1(-self.rate * t)


class Probe(Model):
    """Declares the variables its config names; outputs constant fields and records its inputs."""

    def _initialize(self, config):
        self.time_step = config.get("time_step", 60.0)
        self.inputs = tuple(config.get("inputs", ()))
        self.outputs = tuple(config.get("outputs", ()))
        self.values = {v.name: np.full(v.grid.shape, config.get("fill", 2.5)) for v in self.outputs}
        self.received = {}
        self.fail_after = config.get("fail_after")
        self.fail_in_finalize = config.get("fail_in_finalize", False)
        self.finalize_calls = 0

    def _get_value(self, name):
        return self.values[name]

    def _set_value(self, name, values):
        self.received[name] = values

    def _step(self, dt):
        if self.fail_after is not None and self.current_time + dt > self.fail_after:
            raise RuntimeError(f"{self.name} failed on purpose")

    def _finalize(self):
        self.finalize_calls += 1
        if self.fail_in_finalize:
            raise OSError(f"{self.name} could not close its output")


# -- two reservoirs exchanging water at 60 s and 300 s ----------------------------------------

K_A, K_B = 1.0 / 1800.0, 1.0 / 3600.0  # s-1: A drains into B, B drains back into A
V_A0, V_B0 = 1000.0, 200.0  # m3


def coupled_pair(step_a: float, step_b: float, order=("a", "b")) -> Coupler:
    """Reservoirs a (step_a) and b (step_b) linked both ways through their cumulative outflows."""
    coupler = Coupler(Clock(EPOCH))
    configs = {
        "a": {"time_step": step_a, "rate": K_A, "volume": V_A0},
        "b": {"time_step": step_b, "rate": K_B, "volume": V_B0},
    }
    for name in order:
        coupler.add(name, Reservoir(), configs[name])
    coupler.link(("a", "outflow_total"), ("b", "inflow_total"))
    coupler.link(("b", "outflow_total"), ("a", "inflow_total"))
    return coupler


def state_of(coupler: Coupler) -> np.ndarray:
    """(V_A, V_B, Q_A, Q_B, R_A, R_B): storages, outflow totals, received totals."""
    a, b = coupler.models["a"], coupler.models["b"]
    return np.array(
        [
            a.get_value("storage").item(),
            b.get_value("storage").item(),
            a.get_value("outflow_total").item(),
            b.get_value("outflow_total").item(),
            a.get_value("received_total").item(),
            b.get_value("received_total").item(),
        ]
    )


def total_water(x: np.ndarray) -> float:
    """Stored water plus water in transit (left one reservoir, not yet taken by the other)."""
    v_a, v_b, q_a, q_b, r_a, r_b = x
    return v_a + v_b + (q_a - r_b) + (q_b - r_a)


def discrete_period_map() -> np.ndarray:
    """Exact 300 s map of the discrete scheme for steps 60 s (A) and 300 s (B).

    By the exchange rule both reservoirs read the other's outflow total at the period start t0:
    B (one 300 s step) reads Q_A(t0); A's five 60 s steps all read Q_B(t0), because B is already
    at t0 + 300 when A is at t0 + 60 ... t0 + 240, so the value held from t0 is used. A adds the
    increment u = V_A + Q_B - R_A in its first step and none after, so V_A -> u exp(-k_A 300).
    """
    g_a = math.exp(-K_A * 60.0) ** 5
    g_b = math.exp(-K_B * 300.0)
    #                 V_A      V_B      Q_A      Q_B      R_A      R_B
    return np.array(
        [
            [g_a, 0.0, 0.0, g_a, -g_a, 0.0],  # V_A = g_a * (V_A + Q_B - R_A)
            [0.0, g_b, g_b, 0.0, 0.0, -g_b],  # V_B = g_b * (V_B + Q_A - R_B)
            [1 - g_a, 0.0, 1.0, 1 - g_a, g_a - 1, 0.0],  # Q_A += (1 - g_a) * u
            [0.0, 1 - g_b, 1 - g_b, 1.0, 0.0, g_b - 1],  # Q_B += (1 - g_b) * w
            [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # R_A = Q_B(t0)
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # R_B = Q_A(t0)
        ]
    )


def test_two_way_exchange_matches_discrete_closed_form():
    """24 periods of 300 s match P**24 x0 to 1e-9 relative; water is conserved to 1e-12."""
    coupler = coupled_pair(60.0, 300.0)
    x0 = np.array([V_A0, V_B0, 0.0, 0.0, 0.0, 0.0])
    totals = []
    for period in range(1, 25):
        coupler.step_to(300.0 * period)
        x = state_of(coupler)
        expected = np.linalg.matrix_power(discrete_period_map(), period) @ x0
        np.testing.assert_allclose(x, expected, rtol=1e-9, atol=1e-9 * (V_A0 + V_B0))
        totals.append(total_water(x))
    coupler.close()
    np.testing.assert_allclose(totals, V_A0 + V_B0, rtol=1e-12, atol=0)
    assert all(m.state.value == "finalized" for m in coupler.models.values())


def test_result_does_not_depend_on_the_order_models_were_added():
    """The exchange rule is order-free: swapping the order of add() gives identical bits."""
    results = []
    for order in (("a", "b"), ("b", "a")):
        coupler = coupled_pair(60.0, 300.0, order)
        coupler.step_to(3000.0)
        results.append(state_of(coupler))
        coupler.close()
    np.testing.assert_array_equal(results[0], results[1])


def continuous_storage_a(t: float) -> float:
    """Storage of A for the continuous ODEs dA/dt = -k_A A + k_B B, dB/dt = k_A A - k_B B."""
    equilibrium = (V_A0 + V_B0) * K_B / (K_A + K_B)
    return equilibrium + (V_A0 - equilibrium) * math.exp(-(K_A + K_B) * t)


def test_coupled_result_converges_to_the_ode_at_first_order():
    """Halving both steps halves the error against the ODE: observed order 1 +- 0.05.

    Steps go from (60 s, 300 s) down to (0.94 s, 4.7 s); the lag of the exchange is O(step),
    so first order is what the exchange rule promises.
    """
    horizon = 7200.0
    errors = []
    for level in range(7):
        scale = 0.5**level
        coupler = coupled_pair(60.0 * scale, 300.0 * scale)
        coupler.step_to(horizon)
        x = state_of(coupler)
        coupler.close()
        assert total_water(x) == pytest.approx(V_A0 + V_B0, rel=1e-12)
        v_b_exact = V_A0 + V_B0 - continuous_storage_a(horizon)
        errors.append(max(abs(x[0] - continuous_storage_a(horizon)), abs(x[1] - v_b_exact)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 1.0) < 0.05), orders
    assert errors[-1] / (V_A0 + V_B0) < 2e-3  # 1.2 m3 of 1200 m3 at the finest steps


# -- one-way coupling: analytic decay feeding an integrator --------------------------------


def test_one_way_integrator_matches_closed_form_outflow():
    """B (300 s) integrates A's cumulative outflow (A analytic, 70 s) exactly, to 1e-9.

    After B's step from s = 300 (j - 1), B holds A's closed-form outflow total at the latest A
    grid time <= s, i.e. V0 (1 - exp(-k a)) with a = 70 * floor(s / 70): whatever the number
    of earlier exchanges, the increments telescope to that total without drift.
    """
    v0, rate = 500.0, 1.0 / 2000.0
    coupler = Coupler(Clock(EPOCH, "2024-06-01T02:00:00Z"))
    coupler.add("b", Reservoir(), {"time_step": 300.0, "rate": 0.0, "volume": 0.0})
    coupler.add("a", AnalyticDecay(), {"time_step": 70.0, "volume": v0, "rate": rate})
    coupler.link(("a", "outflow_total"), ("b", "inflow_total"))
    seen = {}
    final = {}

    def record(progress):
        if progress.model == "b":
            seen[round(progress.time)] = coupler.models["b"].get_value("storage").item()
        if progress.fraction == 1.0:
            final.update(
                a_storage=coupler.models["a"].get_value("storage").item(),
                a_out=coupler.models["a"].get_value("outflow_total").item(),
                b_received=coupler.models["b"].get_value("received_total").item(),
                b_storage=coupler.models["b"].get_value("storage").item(),
            )

    coupler.run(progress=record)
    assert sorted(seen) == [300 * j for j in range(1, 25)]
    for j in range(1, 25):
        sample = (300 * (j - 1) // 70) * 70  # integer arithmetic: latest A time <= step start
        expected = -v0 * math.expm1(-rate * sample)
        assert seen[300 * j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert final["a_storage"] == pytest.approx(v0 * math.exp(-rate * 7200.0), rel=1e-9)
    in_transit = final["a_out"] - final["b_received"]
    assert final["a_storage"] + final["b_storage"] + in_transit == pytest.approx(v0, rel=1e-12)
    assert coupler.models["a"].state.value == "finalized"


def test_last_step_is_shortened_and_step_to_in_pieces_equals_one_run():
    """A run to 7230 s ends every model exactly there; stopping at 3600 s changes nothing."""
    coupler = coupled_pair(60.0, 300.0)
    coupler.step_to(7230.0)
    assert [m.current_time for m in coupler.models.values()] == [7230.0, 7230.0]
    assert coupler.current_datetime == datetime(2024, 6, 1, 2, 0, 30, tzinfo=UTC)
    coupler.close()

    whole = coupled_pair(60.0, 300.0)
    whole.step_to(7200.0)
    pieces = coupled_pair(60.0, 300.0)
    pieces.step_to("2024-06-01T01:00:00Z")
    pieces.step_to(datetime(2024, 6, 1, 4, 0, tzinfo=timezone(timedelta(hours=2))))
    np.testing.assert_array_equal(state_of(whole), state_of(pieces))
    whole.close()
    pieces.close()


def test_coupling_step_longer_than_model_step():
    """A model stepping at 60 s but coupled every 300 s sub-steps inside update_until."""
    coupler = Coupler(Clock(EPOCH))
    a = coupler.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0}, step=300)
    assert coupler.step_of("a") == 300.0
    coupler.step_to(900.0)
    assert a.get_value("storage").item() == pytest.approx(V_A0 * math.exp(-K_A * 900), rel=1e-12)
    coupler.close()


# -- refused links and names --------------------------------------------------------------


def _pair(out_var: Variable, in_var: Variable) -> Coupler:
    coupler = Coupler(Clock(EPOCH))
    coupler.add("src", Probe(), {"outputs": [out_var]})
    coupler.add("dst", Probe(), {"inputs": [in_var]})
    return coupler


def test_link_refuses_unit_mismatch_naming_both_ends():
    coupler = _pair(Variable("flow", "m3 s-1"), Variable("flow", "L s-1"))
    with pytest.raises(CouplingError) as info:
        coupler.link(("src", "flow"), ("dst", "flow"))
    message = str(info.value)
    for part in ("src.flow", "dst.flow", "'m3 s-1'", "'L s-1'", "units differ"):
        assert part in message
    assert coupler.links == ()


def test_link_refuses_variables_of_one_unit_but_different_meanings():
    flag = Variable("q", "1", standard_name="observation__quality_flag")
    weight = Variable("w", "1", standard_name="observation__assimilation_weight")
    coupler = _pair(flag, weight)
    for transform in (None, lambda v: v):  # a transform converts units, not meanings
        with pytest.raises(CouplingError, match="mean different things") as info:
            coupler.link(("src", "q"), ("dst", "w"), transform)
        assert "observation__quality_flag" in str(info.value)
    assert coupler.links == ()
    same = _pair(flag, Variable("q2", "1", standard_name="observation__quality_flag"))
    assert same.link(("src", "q"), ("dst", "q2"))


def test_link_refuses_grid_mismatch_naming_both_ends():
    fine = Grid.raster((4, 5), (10.0, 0.0, 330000.0, 0.0, -10.0, 5690000.0))
    coarse = Grid.raster((4, 5), (20.0, 0.0, 330000.0, 0.0, -20.0, 5690000.0))
    wells = Grid.points([[330010.0, 5689990.0], [330030.0, 5689970.0]])
    other_wells = Grid.points([[330010.0, 5689990.0], [330030.0, 5689971.0]])
    cases = [
        (fine, coarse, "raster transforms differ"),
        (fine, wells, "grid kinds differ"),
        (wells, other_wells, "point coordinates differ"),
        (Grid.scalar(), wells, "grid kinds differ"),
    ]
    for out_grid, in_grid, reason in cases:
        coupler = _pair(Variable("head", "m", out_grid), Variable("head", "m", in_grid))
        with pytest.raises(CouplingError) as info:
            coupler.link(("src", "head"), ("dst", "head"))
        message = str(info.value)
        assert reason in message and "src.head" in message and "dst.head" in message
        assert out_grid.describe() in message and in_grid.describe() in message
    # the same grid built another way (an affine.Affine, rounding below 1 micrometre) is accepted
    affine = pytest.importorskip("affine")
    same = Grid.raster((4, 5), affine.Affine(10.0, 0.0, 330000.0 + 1e-9, 0.0, -10.0, 5690000.0))
    coupler = _pair(Variable("head", "m", fine), Variable("head", "m", same))
    assert str(coupler.link(("src", "head"), ("dst", "head"))) == "src.head -> dst.head"


def test_link_with_transform_converts_and_checks_its_result():
    coupler = _pair(Variable("flow", "m3 s-1"), Variable("flow", "L s-1"))
    coupler.link(("src", "flow"), ("dst", "flow"), transform=lambda v: v * 1000.0)
    coupler.step_to(60.0)
    assert coupler.models["dst"].received["flow"] == pytest.approx(2500.0, rel=1e-15)
    coupler.close()

    coupler = _pair(Variable("flow", "m3 s-1"), Variable("flow", "L s-1"))
    coupler.link(("src", "flow"), ("dst", "flow"), transform=lambda v: np.array([v, v]))
    with pytest.raises(ModelError) as info:
        coupler.step_to(60.0)
    assert "'dst'" in str(info.value) and "shape (2,)" in str(info.value)
    assert any("src.flow -> dst.flow" in note for note in info.value.__notes__)
    assert all(m.state.value == "finalized" for m in coupler.models.values())


def test_link_refuses_unknown_models_and_variables():
    coupler = _pair(Variable("flow", "m3 s-1"), Variable("flow", "m3 s-1"))
    cases = [
        ((("nope", "flow"), ("dst", "flow")), ["'nope'", "src, dst"]),
        ((("src", "flwo"), ("dst", "flow")), ["'src'", "no output 'flwo'", "flow"]),
        ((("src", "flow"), ("dst", "rain")), ["'dst'", "no input 'rain'"]),
        ((("dst", "flow"), ("src", "flow")), ["'dst'", "no output 'flow'", "is an input"]),
    ]
    for (source, target), parts in cases:
        with pytest.raises(CouplingError) as info:
            coupler.link(source, target)
        for part in parts:
            assert part in str(info.value)
    coupler.link(("src", "flow"), ("dst", "flow"))
    with pytest.raises(CouplingError, match="already fed by src.flow"):
        coupler.link(("src", "flow"), ("dst", "flow"))


def test_get_and_set_value_refuse_unknown_names_and_bad_shapes():
    grid = Grid.raster((2, 3), (5.0, 0.0, 330000.0, 0.0, -5.0, 5690000.0))
    model = Probe("heat")
    model.initialize(
        {"outputs": [Variable("t_air", "K", grid)], "inputs": [Variable("q_traffic", "W m-2")]}
    )
    with pytest.raises(UnknownVariableError, match=r"model 'heat' has no output 'tair'.*t_air"):
        model.get_value("tair")
    with pytest.raises(UnknownVariableError, match=r"model 'heat' has no input 't_air'"):
        model.set_value("t_air", 1.0)
    assert model.get_value("t_air").shape == (2, 3)
    with pytest.raises(ModelError, match=r"'q_traffic'.*shape \(2,\), expected \(\)"):
        model.set_value("q_traffic", [1.0, 2.0])
    with pytest.raises(ModelError, match="expected numbers"):
        model.set_value("q_traffic", "hot")
    model.set_value("q_traffic", [7.0])  # flat arrays of the right size are reshaped
    assert model.received["q_traffic"].shape == ()


def test_model_life_cycle_is_enforced():
    model = Reservoir("tank")
    with pytest.raises(ModelStateError, match="'tank': update_until called before initialize"):
        model.update_until(60.0)
    model.initialize({"time_step": 60.0, "rate": K_A, "volume": V_A0})
    with pytest.raises(ModelStateError, match="already initialized"):
        model.initialize({"time_step": 60.0, "rate": K_A, "volume": V_A0})
    model.update_until(90.0)  # one full step, then a shortened one
    assert model.current_time == 90.0
    assert model.get_value("storage").item() == pytest.approx(V_A0 * math.exp(-K_A * 90), rel=1e-12)
    with pytest.raises(ModelError, match="cannot go back"):
        model.update_until(30.0)
    with pytest.raises(ModelStateError, match="no clock"):
        _ = model.current_datetime
    model.finalize()
    model.finalize()  # a second finalize does nothing
    with pytest.raises(ModelStateError, match="'tank': update_until called after finalize"):
        model.update_until(120.0)
    with pytest.raises(ModelStateError, match="after finalize"):
        model.get_value("storage")

    class NoStep(Probe):
        def _initialize(self, config):
            super()._initialize(config)
            self.time_step = 0.0

    with pytest.raises(ModelError, match="time_step must be a positive number"):
        NoStep("x").initialize({})


# -- clock ---------------------------------------------------------------------------------


def test_clock_refuses_naive_datetimes():
    with pytest.raises(ClockError, match="start: .* naive"):
        Clock(datetime(2024, 6, 1))
    with pytest.raises(ClockError, match="start: .* naive"):
        Clock("2024-06-01T00:00:00")
    clock = Clock(EPOCH)
    with pytest.raises(ClockError, match="naive"):
        clock.to_seconds(datetime(2024, 6, 1, 1))
    with pytest.raises(ClockError, match="not an ISO 8601"):
        clock.to_seconds("yesterday noon")
    with pytest.raises(ClockError, match="end: .* before start"):
        Clock(EPOCH, "2024-05-31T23:59:59Z")
    coupler = Coupler(clock)
    coupler.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0})
    with pytest.raises(ClockError, match="naive"):
        coupler.step_to(datetime(2024, 6, 1, 1))
    assert issubclass(ClockError, TwinError)


def test_clock_converts_seconds_and_utc_datetimes():
    clock = Clock("2024-03-31T03:00:00+02:00", "2024-03-31T02:00:00Z")  # CEST offset -> 01:00Z
    assert clock.start == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert clock.start.utcoffset() == timedelta(0)
    assert clock.duration == 3600.0
    assert clock.to_datetime(1800.25) == datetime(2024, 3, 31, 1, 30, 0, 250000, tzinfo=UTC)
    assert clock.to_seconds("2024-03-31T01:30:00.25Z") == 1800.25
    assert clock.isoformat(-60.0) == "2024-03-31T00:59:00Z"
    for seconds in (0.0, 1.5, 86400.0 * 365.0 + 0.125):
        assert clock.to_seconds(clock.to_datetime(seconds)) == pytest.approx(seconds, abs=1e-6)


# -- failures during a run -----------------------------------------------------------------


def test_models_are_finalized_when_a_model_raises_during_update():
    coupler = Coupler(Clock(EPOCH, "2024-06-01T01:00:00Z"))
    flow = Variable("flow", "m3 s-1")
    a = coupler.add("a", Probe(), {"outputs": [flow], "time_step": 60.0})
    b = coupler.add("b", Probe(), {"inputs": [flow], "time_step": 300.0, "fail_after": 600.0})
    c = coupler.add("c", Probe(), {"time_step": 100.0, "fail_in_finalize": True})
    coupler.link(("a", "flow"), ("b", "flow"))
    with pytest.raises(RuntimeError, match="b failed on purpose") as info:
        coupler.run()
    notes = "\n".join(info.value.__notes__)
    assert "model 'b' from 2024-06-01T00:10:00Z to 2024-06-01T00:15:00Z" in notes
    assert "finalize of model 'c' also failed" in notes
    assert [m.finalize_calls for m in (a, b, c)] == [1, 1, 1]
    assert b.current_time == 600.0
    with pytest.raises(CouplingError, match="closed"):
        coupler.step_to(900.0)


def test_finalize_errors_surface_and_every_model_is_finalized():
    coupler = Coupler(Clock(EPOCH))
    a = coupler.add("a", Probe(), {"fail_in_finalize": True})
    b = coupler.add("b", Probe(), {})
    with pytest.raises(OSError, match="a could not close"), coupler:
        coupler.step_to(120.0)
    assert (a.finalize_calls, b.finalize_calls) == (1, 1)


def test_setup_errors():
    coupler = Coupler(Clock(EPOCH, "2024-06-01T01:00:00Z"))
    coupler.add("a", Probe(), {})
    with pytest.raises(CouplingError, match="already in the coupler"):
        coupler.add("a", Probe(), {})
    with pytest.raises(CouplingError, match="step must be a positive number"):
        coupler.add("b", Probe(), {}, step=-1.0)
    with pytest.raises(CouplingError, match="after the clock's end"):
        coupler.step_to(7200.0)
    coupler.step_to(60.0)
    with pytest.raises(CouplingError, match="once the coupler has started"):
        coupler.add("c", Probe(), {})
    with pytest.raises(CouplingError, match="before the coupler time"):
        coupler.step_to(0.0)
    coupler.close()
    with pytest.raises(ModelError, match="raster grid transform: degenerate"):
        Grid.raster((2, 2), (0.0, 0.0, 1.0, 0.0, 0.0, 1.0))
    with pytest.raises(ModelError, match=r"expected an \(n, 2\) or \(n, 3\) array"):
        Grid.points([1.0, 2.0])


# -- declared variables --------------------------------------------------------------------


def test_variables_are_declared_on_the_class_and_checked_at_initialize():
    """Declarations are readable before a model exists; initialize refuses what disagrees."""
    assert [s.name for s in Reservoir.declared_outputs()] == [
        "storage",
        "outflow_total",
        "received_total",
    ]
    raster = Grid.raster((2, 3), (5.0, 0.0, 330000.0, 0.0, -5.0, 5690000.0))
    heat = VariableSpec("heat", "W m-2", "land_surface__heat_flux", "raster", optional=True)

    class Declared(Probe):
        OUTPUTS = (STORAGE, heat)

    ok = Declared("ok")
    ok.initialize({"outputs": bind(Declared.OUTPUTS, {"heat": raster})})
    assert ok.output_variable("heat").standard_name == "land_surface__heat_flux"
    Declared("no-heat").initialize({"outputs": bind(Declared.OUTPUTS)})  # optional: left out
    cases = [
        ([Variable("storage", "L", standard_name=STORAGE.standard_name)], "units 'L'"),
        ([Variable("storage", "m3")], "standard name ''"),
        ([STORAGE.bind(), Variable("level", "m")], "'level' is not declared"),
        ([heat.bind(raster)], "declared output.s. storage not bound"),
        ([STORAGE.bind(), Variable("heat", "W m-2", Grid.scalar(), heat.standard_name)], "scalar"),
    ]
    for outputs, message in cases:
        bad = Declared("bad")
        with pytest.raises(ModelError, match=message):
            bad.initialize({"outputs": outputs})
        assert bad.finalize_calls == 1 and bad.state.value == "finalized"  # resources released


def test_variable_specs_need_a_csdms_standard_name_and_the_right_grid():
    for bad in ("", "head", "Groundwater__head", "groundwater_head_", "a__b__c"):
        with pytest.raises(ModelError, match="CSDMS-style"):
            VariableSpec("head", "m", bad)
    with pytest.raises(ModelError, match="grid: expected one of"):
        VariableSpec("head", "m", "groundwater__hydraulic_head", "mesh")
    head = VariableSpec("head", "m", "groundwater__hydraulic_head", "raster")
    with pytest.raises(ModelError, match="give that grid"):
        bind([head])
    with pytest.raises(ModelError, match="declared on a raster grid, bound to points"):
        head.bind(Grid.points([[330000.0, 5690000.0]]))
    with pytest.raises(ModelError, match="'depth' not declared"):
        bind([head], {"depth": Grid.scalar()})
    with pytest.raises(ModelError, match="'head' is required"):
        bind([head], {"head": None})


# -- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_of_a_coupled_run_restores_bit_for_bit(tmp_path):
    """Checkpoints at a common time and from inside a run (a at 1440 s, b already at 1500 s, so
    a's input comes from b's held value) both continue exactly like the uninterrupted run."""
    whole = coupled_pair(60.0, 300.0)
    whole.step_to(3000.0)
    expected = state_of(whole)
    whole.close()

    first = coupled_pair(60.0, 300.0)
    first.step_to(1200.0)
    first.checkpoint(tmp_path / "t1200.npz")
    mid = tmp_path / "mid.npz"

    def save_mid(progress):
        if progress.model == "a" and progress.time == 1440.0 and not mid.exists():
            first.checkpoint(mid)

    first.step_to(3000.0, save_mid)
    np.testing.assert_array_equal(state_of(first), expected)
    first.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid.npz", "t1200.npz"]  # no temp
    for path, time in ((tmp_path / "t1200.npz", 1200.0), (mid, 1440.0)):
        with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickled objects
            assert all(archive[name].dtype.kind != "O" for name in archive.files)
        restored = coupled_pair(60.0, 300.0)
        restored.restore(path)
        assert restored.time == time
        restored.step_to(3000.0)
        np.testing.assert_array_equal(state_of(restored), expected)
        restored.close()


def test_restore_refuses_another_setup_or_a_started_run(tmp_path):
    path = tmp_path / "state.npz"
    coupler = coupled_pair(60.0, 300.0)
    coupler.step_to(600.0)
    coupler.checkpoint(path)
    coupler.close()
    other_clock = Coupler(Clock("2024-06-02T00:00:00Z"))
    other_clock.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0})
    cases = [
        (coupled_pair(60.0, 120.0), r"models \(name, class, step\)"),
        (coupled_pair(60.0, 300.0, order=("b", "a")), r"models \(name, class, step\)"),
        (other_clock, "clock start '2024-06-01T00:00:00Z'"),
    ]
    unlinked = Coupler(Clock(EPOCH))
    unlinked.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0})
    unlinked.add("b", Reservoir(), {"time_step": 300.0, "rate": K_B, "volume": V_B0})
    cases.append((unlinked, "links"))
    started = coupled_pair(60.0, 300.0)
    started.step_to(60.0)
    cases.append((started, "restore: not allowed once the coupler has started"))
    for coupler, message in cases:
        with pytest.raises(CouplingError, match=message):
            coupler.restore(path)
        coupler.close()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for bad, message in (("junk.npz", "not a checkpoint archive"), ("none.npz", "no such file")):
        with pytest.raises(CouplingError, match=message):
            coupled_pair(60.0, 300.0).restore(tmp_path / bad)
    later = Coupler(Clock(EPOCH, "2024-06-01T00:05:00Z"))  # ends before the checkpoint
    later.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0})
    later.add("b", Reservoir(), {"time_step": 300.0, "rate": K_B, "volume": V_B0})
    later.link(("a", "outflow_total"), ("b", "inflow_total"))
    later.link(("b", "outflow_total"), ("a", "inflow_total"))
    with pytest.raises(CouplingError, match="after this run's end"):
        later.restore(path)


def test_models_without_state_hooks_refuse_checkpoints_and_nothing_is_written(tmp_path):
    coupler = Coupler(Clock(EPOCH))
    coupler.add("a", Reservoir(), {"time_step": 60.0, "rate": K_A, "volume": V_A0})
    probe = coupler.add("p", Probe(), {})
    assert not probe.supports_checkpoints
    coupler.step_to(120.0)
    with pytest.raises(ModelError, match=r"model 'p' \(Probe\) does not support checkpoints"):
        probe.save_state()
    with pytest.raises(CouplingError, match="cannot checkpoint to .*'p' .*does not support"):
        coupler.checkpoint(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []
    coupler.close()
    with pytest.raises(CouplingError, match="closed"):
        coupler.checkpoint(tmp_path / "x.npz")


def test_saved_state_holds_plain_arrays_and_scalars_only():
    class Odd(Reservoir):
        def _save_state(self):
            return {"volume": np.array([object()], dtype=object)}

    model = Odd("odd")
    model.initialize({"time_step": 60.0, "rate": K_A, "volume": V_A0})
    with pytest.raises(ModelError, match="'volume': expected a numeric, boolean or text array"):
        model.save_state()
    tank = Reservoir("tank")
    tank.initialize({"time_step": 60.0, "rate": K_A, "volume": V_A0})
    tank.update_until(90.0)
    state = tank.save_state()
    assert state["__time__"] == 90.0 and state["volume"] < V_A0
    with pytest.raises(ModelError, match="saved time must be seconds >= 0"):
        tank.load_state({**state, "__time__": -5.0})
    with pytest.raises(ModelError, match="state keys must be text"):
        tank.load_state({**state, "__secret": 1.0})
