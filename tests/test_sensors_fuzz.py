"""Fuzzing the decoders and validators: whatever a message holds (any bytes, any JSON value in any
place of a real message, a real message mutated at random), it ends stored, quarantined with one of
the declared reasons, or as a duplicate, with its bytes in the store; never an exception, and never
'internal' (the reason of a check that failed unforeseen). Runs are bounded to stay fast."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_helpers import KREFELD_PARKING

from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import DecodeError, load_profiles
from twin.sensors.simulate import simulate, stream
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import MAX_DEPTH, MessageRejected, nesting_exceeds, parse_uplink
from twin.sensors.validate import REASONS

PROFILES = load_profiles()
START = 1717221600.0  # 2024-06-01T06:00:00Z
# 150 examples a test by default; TWIN_FUZZ_EXAMPLES=N for a longer run.
FUZZ = settings(max_examples=int(os.environ.get("TWIN_FUZZ_EXAMPLES", "150")), deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
ENDINGS = {"stored", "duplicate", "quarantined"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An ingest on a real store, and real simulated messages of both servers and all payload
    modes (wells, climate stations, parking)."""
    root = tmp_path_factory.mktemp("fuzz")
    wells, stations = write_synthetic_catalogue(root / "cat", n_wells=3, n_stations=2)
    catalogue = load_catalogue(wells, stations, KREFELD_PARKING)
    events = simulate(catalogue, PROFILES, start=START, minutes=20, seed=9, clean=True)
    rng = random.Random(1)
    picked = [e for kind in ("wells", "stations", "parking")
              for e in rng.sample([e for e in events if e.device.kind == kind], 4)]  # fmt: skip
    seeds = [body for fmt in ("tts", "chirpstack") for mode in ("both", "binary", "decoded")
             for _, _, body in stream(picked, fmt, mode)]  # fmt: skip
    store = SQLiteStore(root / "fuzz.sqlite")
    ingestor = Ingestor(store, catalogue, PROFILES, now=lambda: START + 1800, worker="thread")
    assert {o.status for o in ingestor.ingest(seeds[:12])} == {"stored"}  # the seeds are good
    yield ingestor, store, seeds, catalogue
    store.close()


def assert_each_ends(ingestor: Ingestor, store: SQLiteStore, bodies: list[bytes]) -> list:
    """Every body ends in exactly one known way and is kept in the store as received."""
    outcomes = ingestor.ingest(bodies)
    assert len(outcomes) == len(bodies)
    for body, o in zip(bodies, outcomes, strict=True):
        assert o.status in ENDINGS, (body[:200], o)
        if o.status == "quarantined":
            assert o.reason in REASONS and o.reason != "internal", (body[:200], o)
    shas = [hashlib.sha256(b).digest() for b in bodies]
    assert store.known_hashes(shas) == set(shas)
    return outcomes


@FUZZ
@given(body=st.binary(max_size=3000))
def test_any_bytes(setup, body: bytes):
    ingestor, store, *_ = setup
    assert_each_ends(ingestor, store, [body])


def _paths(value, path=()) -> list[tuple]:
    """Every place in a JSON value: dict keys and list indices down to the leaves."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


JSON = st.recursive(
    st.none() | st.booleans() | st.text(max_size=20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.sampled_from([0, -1, 2**32, 2**63, 2**64, 1e308, -1e308, 5e-324, "", "1e400"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
# Text put in place of a value: what Python's json would never write.
TOKENS = ["1e400", "-1e400", "NaN", "-Infinity", "9" * 400, "-" + "9" * 400, "[" * 5000,
          "[" * 40 + "]" * 40, '"\\ud800"', '"\udcff"', "{}", "[]", "1" * 5000, "0.1e-99999"]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_any_value_anywhere_in_a_real_message(setup, data):
    ingestor, store, seeds, _ = setup
    msg = json.loads(data.draw(st.sampled_from(seeds)))
    path = data.draw(st.sampled_from(_paths(msg)[1:]))
    parent = msg
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["value", "delete", "token"]))
    if action == "delete":
        del parent[path[-1]]
        body = json.dumps(msg).encode()
    elif action == "value":
        parent[path[-1]] = data.draw(JSON)
        body = json.dumps(msg).encode()
    else:
        parent[path[-1]] = "@token@"
        token = data.draw(st.sampled_from(TOKENS))
        body = json.dumps(msg).replace('"@token@"', token).encode("utf-8", "surrogateescape")
    assert_each_ends(ingestor, store, [body])


def _mutate(body: bytes, rng: random.Random) -> bytes:
    """A real message with a few random edits: bytes flipped, cut, repeated, or a hostile token."""
    b = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b) + 1)
        op = rng.randrange(6)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            del b[i : i + rng.randint(1, 40)]
        elif op == 2:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j) : max(i, j)][:200]
        elif op == 3:
            b[i:i] = rng.choice(TOKENS).encode("utf-8", "surrogateescape")
        elif op == 4:  # a number replaced by a hostile one
            digits = [k for k, c in enumerate(b) if chr(c).isdigit()]
            if digits:
                k = rng.choice(digits)
                b[k : k + 1] = rng.choice(TOKENS[:6]).encode()
        else:
            b[i:i] = bytes([rng.choice(b'{}[]",:\\')])
    return bytes(b)


def test_seeded_mutations_of_real_messages(setup, tmp_path: Path):
    """3 000 mutants in batches of 100, duplicates among them, into a store of their own: each
    ends once, and the store's counts add up (each distinct message is an uplink or a quarantine
    entry)."""
    *_, seeds, catalogue = setup
    store = SQLiteStore(tmp_path / "mutants.sqlite")
    ingestor = Ingestor(store, catalogue, PROFILES, now=lambda: START + 1800, worker="thread")
    before = store.status()
    rng = random.Random(2024)
    mutants = [_mutate(rng.choice(seeds), rng) for _ in range(3000)]
    mutants += rng.sample(mutants, 100)  # redeliveries
    rng.shuffle(mutants)
    distinct = {hashlib.sha256(m).digest() for m in mutants}
    known = store.known_hashes(list(distinct))
    outcomes = []
    for i in range(0, len(mutants), 100):
        outcomes += assert_each_ends(ingestor, store, mutants[i : i + 100])
    after = store.status()
    assert after["distinct_messages"] - before["distinct_messages"] == len(distinct - known)
    assert after["distinct_messages"] == after["uplinks"] + after["quarantined"]
    assert after["messages"] - before["messages"] == len(mutants)
    reasons = {o.reason for o in outcomes if o.status == "quarantined"}
    assert {"invalid_json", "schema"} <= reasons  # the mutator does reach the checks
    assert any(o.status == "stored" for o in outcomes)
    store.close()


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nested(depth: int, leaf):
    """A value ``depth`` levels deep, alternating lists and objects with brackets in keys."""
    for i in range(depth):
        leaf = [leaf, "]]"] if i % 2 else {'"[{': leaf, "\\": "{"}
    return leaf


@FUZZ
@given(value=st.recursive(st.text(alphabet='[]{}"\\ab', max_size=6) | st.integers(),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner,
                                            max_size=3), max_leaves=30),
       extra=st.integers(min_value=0, max_value=2 * MAX_DEPTH))  # fmt: skip
def test_nesting_scan_agrees_with_the_parser(value, extra: int):
    """The bracket scan measures JSON depth as the parser does (brackets in strings and escaped
    quotes do not count), for any value and nesting around the limit."""
    doc = _nested(extra, value)
    body = json.dumps(doc).encode()
    for limit in (MAX_DEPTH, 3, 0):
        assert nesting_exceeds(body, limit) == (_depth(doc) > limit)


def test_nesting_scan_of_100000_levels():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert nesting_exceeds(deep)
    assert not nesting_exceeds(b'{"a": "' + b"[" * 100_000 + b'"}')  # brackets in a string


@FUZZ
@given(payload=st.binary(max_size=24), port=st.integers(min_value=0, max_value=255))
def test_binary_decoders_give_finite_values_or_a_decode_error(payload: bytes, port: int):
    for profile in PROFILES.profiles.values():
        device = {"reference_height_m": 35.0, "well_depth_m": 12.0}
        try:
            fields = profile.layout(port).unpack(payload)
            values = profile.derive(port, fields, device)
        except DecodeError:
            continue
        assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())


NUMBERS = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400)
           | st.booleans() | st.text(max_size=3) | st.none())  # fmt: skip


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["status", "battery", "level_below_reference",
                                               "water_temperature", "pressure", "temperature"]),
                              NUMBERS, max_size=4), port=st.integers(1, 3))  # fmt: skip
def test_decoded_fields_give_finite_values_or_a_reason(fields: dict, port: int):
    device = {"reference_height_m": 35.0, "well_depth_m": 12.0}
    for profile in PROFILES.profiles.values():
        try:
            values = profile.derive(port, fields, device)
        except DecodeError as exc:
            assert exc.reason in REASONS
            continue
        assert all(math.isfinite(v) for v in values.values())


@FUZZ
@given(msg=st.dictionaries(st.sampled_from(["end_device_ids", "uplink_message", "deviceInfo",
                                            "fCnt", "fPort", "time", "data", "object", "rxInfo",
                                            "received_at"]), JSON, max_size=6))  # fmt: skip
def test_parse_uplink_of_any_shape(msg: dict):
    try:
        parse_uplink(msg)
    except MessageRejected as rej:
        assert rej.reason in REASONS
