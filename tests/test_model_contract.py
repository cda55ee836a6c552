"""The contract every twin.core.Model adapter keeps, in the spirit of CSDMS's bmi-tester.

Each test runs against every adapter: the test models of tests/test_core.py, the traffic model on a
3 x 3 SUMO grid, the ground-water model built in code on a small grid, and the sensor feed over a
small store filled by the ingest of simulated uplinks. Checked: the variables declared on the class
are what initialize binds (names, units, standard names, grid kinds); get/set copy; update_until
reaches exactly t, never goes past, refuses the past and treats t == now as a no-op; finalize ends
every call and is harmless twice; a checkpointed model continues bit for bit like the original.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_core import AnalyticDecay, Reservoir

from twin.core import (
    MODEL_KINDS,
    Clock,
    Coupler,
    CouplingError,
    Model,
    ModelError,
    ModelStateError,
    UnknownVariableError,
    list_variables,
    model_class,
)

EPOCH = "2024-06-01T00:00:00Z"
T0 = 1717200000.0  # EPOCH as seconds since 1970

# -- the adapters under test ---------------------------------------------------------------------


@dataclass
class Case:
    """How to build one adapter: ``make(folder)`` returns the model (not initialized) and config."""

    make: Callable[[Path], tuple[Model, dict[str, Any]]]
    resumable: bool  # whether the model must support checkpoints
    step: float  # the coupling step the tests advance by
    internal_time: Callable[[Model], float] | None = None  # the adapter's own clock, if it has one
    inputs: Callable[[Model], dict[str, np.ndarray]] = field(default=lambda model: {})


def _reservoir(folder: Path) -> tuple[Model, dict[str, Any]]:
    return Reservoir(), {"time_step": 60.0, "rate": 1.0 / 1800.0, "volume": 1000.0}


def _decay(folder: Path) -> tuple[Model, dict[str, Any]]:
    return AnalyticDecay(), {"time_step": 70.0, "volume": 500.0, "rate": 1.0 / 2000.0}


GRID_ROUTES = """<routes>
  <vType id="car" vClass="passenger" sigma="0.5"/>
  <flow id="we" type="car" from="A1B1" to="B1C1" begin="0" end="400" period="3"/>
  <flow id="ns" type="car" from="B2B1" to="B1B0" begin="1" end="400" period="4"/>
</routes>"""


def _traffic(folder: Path) -> tuple[Model, dict[str, Any]]:
    from twin.traffic.runs import TrafficModel, plan_run
    from twin.traffic.scenario import sumocfg_scenario
    from twin.traffic.sim import sumo_binary

    net = folder / "grid"
    if not (net / "run.sumocfg").exists():
        net.mkdir(exist_ok=True)
        cmd = [sumo_binary("netgenerate"), "--grid", "--grid.number", "3", "--grid.length", "200"]
        cmd += ["--default.lanenumber", "1", "--tls.set", "B1", "--no-turnarounds", "-o", "net.xml"]
        subprocess.run(cmd, cwd=net, check=True, capture_output=True, timeout=120)
        (net / "routes.xml").write_text(GRID_ROUTES, encoding="utf-8")
        (net / "run.sumocfg").write_text(
            '<configuration><input><net-file value="net.xml"/><route-files value="routes.xml"/>'
            "</input></configuration>",
            encoding="utf-8",
        )
    scenario = sumocfg_scenario(net / "run.sumocfg", junctions=None, duration_s=600.0, seeds=[1])
    plan = plan_run(scenario, runs_root=folder / "runs", products=None, variants=["baseline"])
    grid = {"shape": (3, 3), "transform": (200.0, 0.0, -100.0, 0.0, -200.0, 500.0)}
    return TrafficModel(), {"plan": plan, "variant": "baseline", "seed": 1, "grid": grid}


def _traffic_time(model: Any) -> float:
    return model._sim.time - model._begin


def _groundwater(folder: Path) -> tuple[Model, dict[str, Any]]:
    from twin.groundwater import Grid, GroundwaterModel
    from twin.groundwater import Model as FlowModel

    grid = Grid(nx=12, ny=10, cell=100.0, origin=(330000.0, 5689000.0))
    flow = FlowModel(grid, k=1e-3, top=40.0, bottom=5.0, sy=0.18, confined=False)
    west = np.zeros(grid.shape, dtype=bool)
    west[:, 0] = True
    flow.set_fixed_head(west, 32.0)
    river = np.zeros(grid.shape, dtype=bool)
    river[:, -2] = True
    flow.add_river(river, 28.5, 0.05, 22.0, name="Rhine")
    flow.set_recharge(8e-9)
    wells = {"id": np.array(["A", "B"]), "x": np.array([330350.0, 330850.0]),
             "y": np.array([5689350.0, 5689750.0])}  # fmt: skip
    head = flow.solve_steady(30.0)
    flow.set_recharge(5e-8)  # a wet spell from the start: the heads rise step by step
    config = {"model": flow, "initial_head": head, "time_step": 3600.0,
              "wells": wells, "terrain": np.full(grid.shape, 38.0)}  # fmt: skip
    return GroundwaterModel(), config


def _groundwater_inputs(model: Any) -> dict[str, np.ndarray]:
    shapes = {name: model.input_variable(name).grid.shape for name in model.input_names}
    values = {"recharge": 2e-8, "river_stage": 29.0, "observed_head": 31.0,
              "observation_weight": 1.0}  # fmt: skip
    return {name: np.full(shape, values.get(name, 1.0)) for name, shape in shapes.items()}


def _sensor_feed(folder: Path) -> tuple[Model, dict[str, Any]]:
    from twin.sensors.devices import load_catalogue
    from twin.sensors.feed import SensorFeed
    from twin.sensors.ingest import Ingestor
    from twin.sensors.profiles import load_profiles
    from twin.sensors.store import SQLiteStore
    from twin.sensors.synthetic import write_synthetic_catalogue
    from twin.sensors.uplink import render_tts

    path = folder / "sensors.sqlite"
    if not path.exists():
        wells, stations = write_synthetic_catalogue(folder / "cat", n_wells=3, n_stations=1)
        catalogue = load_catalogue(wells, stations, None)
        store = SQLiteStore(path)
        try:
            ingestor = Ingestor(store, catalogue, load_profiles(), now=lambda: T0 + 86400)
            bodies = []
            for w in catalogue.of_kind("wells")[:2]:  # the third well never reports
                for n, t in enumerate(T0 + np.arange(0.0, 7200.0, 450.0) + 7.0):
                    payload = (4000 + 10 * n).to_bytes(2, "big") + bytes.fromhex("04540DCC")
                    uplink = render_tts(dev_eui=w.dev_eui, device_id=w.id, f_cnt=n, f_port=1,
                                        time=float(t), payload=payload, decoded=None)  # fmt: skip
                    bodies.append(json.dumps(uplink).encode())
            ingestor.ingest(bodies)
        finally:
            store.close()
    store = SQLiteStore(path, readonly=True)
    model = SensorFeed(store)
    model._contract_store = store  # closed by the fixture: a store passed in is the caller's
    return model, {"quantities": ["groundwater_head"], "time_step": 600.0, "max_age_s": 1800.0}


def _heat(folder: Path) -> tuple[Model, dict[str, Any]]:
    """The heat model on a small synthetic city (two blocks, a tree row, a park) built in code."""
    from twin.heat.forcing import synthetic_heat_wave
    from twin.heat.model import HeatModel
    from twin.heat.scenario import HeatGrid, Setup, apply_variant, load_scenario

    repo = Path(__file__).resolve().parents[1]
    sc = load_scenario(repo / "simulations" / "heat-wave.toml")
    grid = HeatGrid((20, 24), 10.0, 330000.0, 5689200.0)
    shape = grid.shape
    height = np.zeros(shape)
    height[4:9, 4:10] = 15.0
    height[12:17, 14:20] = 24.0
    canopy = np.zeros(shape)
    canopy[10, 2:22] = 10.0
    cover = (canopy > 0).astype(float)
    landcover = np.full(shape, 2.0)  # road
    landcover[height > 0] = 1.0
    landcover[:, 20:] = 9.0  # park
    classes = [{"code": 1, "name": "building", "sealed": 1.0},
               {"code": 2, "name": "road", "sealed": 0.95},
               {"code": 9, "name": "park", "sealed": 0.05}]  # fmt: skip
    forcing = synthetic_heat_wave(EPOCH, days=1, before_s=3600.0)
    stations = {"id": np.array(["S1", "S2"]), "x": np.array([330050.0, 330180.0]),
                "y": np.array([5689150.0, 5689050.0])}  # fmt: skip
    setup = Setup(sc, Clock(EPOCH, "2024-06-02T00:00:00Z"), grid, None, folder, np.full(shape, 35.0),
                  height, canopy, cover, landcover, classes, np.full(shape, 3.0),
                  np.zeros(shape), forcing, stations, 51.33, 6.56)  # fmt: skip
    return HeatModel(), {"setup": apply_variant(setup), "stations": stations}


def _heat_inputs(model: Any) -> dict[str, np.ndarray]:
    shapes = {name: model.input_variable(name).grid.shape for name in model.input_names}
    values = {"traffic_heat_flux": 20.0, "depth_to_water": 4.0,
              "observed_air_temperature": 25.0, "observation_weight": 1.0}  # fmt: skip
    return {name: np.full(shape, values[name]) for name, shape in shapes.items()}


CASES = {
    "reservoir": Case(_reservoir, True, 60.0, inputs=lambda m: {"inflow_total": np.array(50.0)}),
    "analytic-decay": Case(_decay, True, 70.0),
    "traffic": Case(_traffic, False, 1.0, internal_time=_traffic_time),
    "groundwater": Case(_groundwater, True, 3600.0, inputs=_groundwater_inputs),
    "sensor-feed": Case(_sensor_feed, True, 600.0),
    "heat": Case(_heat, True, 600.0, inputs=_heat_inputs),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contract")


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
def build(case: Case, folder: Path) -> Iterator[Callable[..., Model]]:
    """Builds models of the case (initialized unless asked not to); finalizes them all at the end."""
    made: list[Model] = []

    def make(*, initialize: bool = True) -> Model:
        model, config = case.make(folder)
        made.append(model)
        model.clock = Clock(EPOCH)
        model._contract_config = config
        if initialize:
            model.initialize(config)
        return model

    try:
        yield make
    finally:
        for model in made:
            model.finalize()
            store = getattr(model, "_contract_store", None)
            if store is not None:
                store.close()


def _outputs(model: Model) -> dict[str, np.ndarray]:
    return {name: model.get_value(name) for name in model.output_names}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name, strict=True)


# -- declarations -------------------------------------------------------------------------------


def test_class_declares_its_variables_with_standard_names(case: Case, build) -> None:
    model = build(initialize=False)
    cls = type(model)
    config = model._contract_config
    inputs, outputs = cls.declared_inputs(config), cls.declared_outputs(config)
    assert inputs or outputs, f"{cls.__name__} declares no variables on the class"
    for specs in (inputs, outputs):
        names = [s.name for s in specs]
        assert len(names) == len(set(names))
        assert all("__" in s.standard_name and s.units for s in specs)
    with pytest.raises(ModelStateError, match="declared by initialize"):
        model.output_variable(outputs[0].name if outputs else inputs[0].name)
    with pytest.raises(ModelStateError, match="before initialize"):
        model.get_value("anything")


def test_initialize_binds_what_the_class_declares(case: Case, build) -> None:
    model = build()
    cls = type(model)
    config = model._contract_config
    for names, lookup, specs in (
        (model.input_names, model.input_variable, cls.declared_inputs(config)),
        (model.output_names, model.output_variable, cls.declared_outputs(config)),
    ):
        declared = {s.name: s for s in specs}
        assert set(names) <= set(declared), set(names) - set(declared)
        assert {s.name for s in specs if not s.optional} <= set(names)
        for name in names:
            variable, spec = lookup(name), declared[name]
            assert (variable.units, variable.standard_name, variable.grid.kind) == (
                spec.units,
                spec.standard_name,
                spec.grid,
            )
    assert model.time_step > 0 and model.current_time == 0.0


# -- get and set ----------------------------------------------------------------------------------


def test_get_value_gives_copies_shaped_like_the_grid(case: Case, build) -> None:
    model = build()
    model.update_until(case.step)
    assert model.output_names
    for name in model.output_names:
        grid = model.output_variable(name).grid
        value = model.get_value(name)
        assert value.shape == grid.shape and value.dtype.kind in "biuf", name
        kept = value.copy()
        value[...] = 1e9  # the caller's copy: the model must not see this
        np.testing.assert_array_equal(model.get_value(name), kept, err_msg=name)
    with pytest.raises(UnknownVariableError, match="has no output"):
        model.get_value("no_such_variable")


def test_set_value_copies_and_checks_shapes(case: Case, build) -> None:
    first = build()
    values = case.inputs(first)
    assert set(values) == set(first.input_names)
    if not values:
        with pytest.raises(UnknownVariableError, match="has no input"):
            first.set_value("no_such_variable", 1.0)
        return
    second = build()
    for name, value in values.items():
        with pytest.raises(ModelError, match="shape"):
            first.set_value(name, np.zeros(value.size + 1))
        mine = value.copy()
        first.set_value(name, mine)
        mine += 1e3  # changed after set_value: the model keeps what it was given
        second.set_value(name, value)
    first.update_until(case.step)
    second.update_until(case.step)
    _assert_same(_outputs(first), _outputs(second))


# -- time -----------------------------------------------------------------------------------------


def test_update_until_reaches_t_exactly_and_never_goes_past(case: Case, build) -> None:
    model = build()
    for t in (0.5 * case.step, case.step, 2.5 * case.step, 3.0 * case.step):
        model.update_until(t)
        assert model.current_time == t
        if case.internal_time is not None:
            assert t - case.step < case.internal_time(model) <= t
    before = _outputs(model)
    saved = model.save_state() if model.supports_checkpoints else None
    model.update_until(3.0 * case.step)  # t == now: nothing happens
    assert model.current_time == 3.0 * case.step
    _assert_same(before, _outputs(model))
    if saved is not None:
        _assert_same(saved, model.save_state())
    for bad, message in ((case.step, "cannot go back"), (float("nan"), "finite time")):
        with pytest.raises(ModelError, match=message):
            model.update_until(bad)
        assert model.current_time == 3.0 * case.step
    _assert_same(before, _outputs(model))


def test_finalize_ends_every_call_and_is_harmless_twice(case: Case, build) -> None:
    never = build(initialize=False)
    never.finalize()  # finalizing a model that never started does nothing
    model = build()
    model.update_until(case.step)
    name = model.output_names[0]
    model.finalize()
    model.finalize()
    calls = {
        "update_until": lambda: model.update_until(2 * case.step),
        "get_value": lambda: model.get_value(name),
        "set_value": lambda: model.set_value(name, 0.0),
        "save_state": model.save_state,
        "load_state": lambda: model.load_state({"__time__": 0.0}),
        "initialize": lambda: model.initialize(model._contract_config),
    }
    for what, call in calls.items():
        with pytest.raises(ModelStateError, match="finalize|finalized") as info:
            call()
        assert what in str(info.value)


# -- checkpoints ----------------------------------------------------------------------------------


def test_restored_model_continues_bit_for_bit(case: Case, build) -> None:
    model = build()
    assert model.supports_checkpoints is case.resumable
    model.update_until(1.5 * case.step)
    if not case.resumable:
        with pytest.raises(ModelError, match="does not support checkpoints"):
            model.save_state()
        return
    inputs = case.inputs(model)
    for name, value in inputs.items():
        model.set_value(name, value)
    state = model.save_state()
    at_save = _outputs(model)
    model.update_until(4.0 * case.step)
    again = build()
    again.load_state(state)
    assert again.current_time == 1.5 * case.step
    _assert_same(at_save, _outputs(again))  # what the coupler reads before the next step
    state["__time__"] = -1.0  # the saved dict is a copy: changing it changes nothing
    again.update_until(4.0 * case.step)
    _assert_same(_outputs(model), _outputs(again))


def test_coupler_checkpoint_and_restore_equal_the_uninterrupted_run(
    case: Case, build, tmp_path: Path
) -> None:
    end = 5.0 * case.step
    first = Coupler(Clock(EPOCH))  # models come from the fixture, which finalizes them
    model = build(initialize=False)
    first.add("m", model, model._contract_config)
    first.step_to(2.0 * case.step)
    path = tmp_path / "state.npz"
    if not case.resumable:
        with pytest.raises(CouplingError, match="does not support checkpoints"):
            first.checkpoint(path)
        assert not path.exists() and list(tmp_path.iterdir()) == []
        return
    first.checkpoint(path)
    first.step_to(end)
    restored = Coupler(Clock(EPOCH))
    other = build(initialize=False)
    restored.add("m", other, other._contract_config)
    restored.restore(path)
    assert restored.time == 2.0 * case.step
    restored.step_to(end)
    _assert_same(_outputs(model), _outputs(other))


# -- listing the variables of every model kind ----------------------------------------------------


def test_list_variables_gives_every_kinds_declarations() -> None:
    rows = list_variables()
    assert {row.model for row in rows} == set(MODEL_KINDS)
    for kind in MODEL_KINDS:
        cls = model_class(kind)
        declared = [("input", s) for s in cls.declared_inputs()]
        declared += [("output", s) for s in cls.declared_outputs()]
        listed = [r for r in rows if r.model == kind]
        assert [(r.direction, r.name, r.units, r.standard_name, r.grid) for r in listed] == [
            (d, s.name, s.units, s.standard_name, s.grid) for d, s in declared
        ]
    traffic = {r.name: r for r in rows if r.model == "traffic"}
    assert traffic["traffic_heat_flux"].units == "W m-2"
    assert traffic["traffic_heat_flux"].grid == "raster" and traffic["traffic_heat_flux"].optional
    with pytest.raises(ModelError, match="unknown; known kinds are: groundwater, heat, sensors"):
        model_class("weather")


def test_list_variables_starts_no_simulator_and_opens_no_store(tmp_path: Path) -> None:
    """In a fresh interpreter in an empty folder: libsumo is not loaded, no file is created."""
    code = (
        "import json, sys\n"
        "from twin.core import list_variables\n"
        "rows = list_variables()\n"
        "print(json.dumps({'rows': len(rows), 'kinds': sorted({r.model for r in rows}),\n"
        "    'libsumo': 'libsumo' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["libsumo"] is False
    assert result["kinds"] == sorted(MODEL_KINDS) and result["rows"] > 0
    assert list(tmp_path.iterdir()) == []
