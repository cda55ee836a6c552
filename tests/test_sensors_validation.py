"""Validation without loss: each kind of bad message is quarantined with its reason and its raw body;
duplicates, out-of-order and late messages are recognised; ingest is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import load_profiles
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import render_chirpstack, render_tts
from twin.sensors.validate import LATE, OUT_OF_ORDER

PROFILES = load_profiles()
NOW = 1717200000.0  # 2024-06-01T00:00:00Z, the ingest's wall clock in these tests
GOOD = bytes.fromhex("16C104540DCC")  # level 5.825 m, 11.08 degC, 3.532 V


@pytest.fixture
def setup(tmp_path: Path):
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=3, n_stations=1)
    catalogue = load_catalogue(wells, stations, None)
    store = SQLiteStore(tmp_path / "s.sqlite")
    ingestor = Ingestor(store, catalogue, PROFILES, now=lambda: NOW, late_after_s=3600)
    well = catalogue.of_kind("wells")[0]
    yield store, ingestor, well
    store.close()


def tts(well, f_cnt=1, time=NOW - 60, payload=GOOD, **kw) -> bytes:
    msg = render_tts(dev_eui=kw.pop("dev_eui", well.dev_eui), device_id=well.id, f_cnt=f_cnt,
                     f_port=kw.pop("f_port", 1), time=time, payload=payload, decoded=None, **kw)  # fmt: skip
    return json.dumps(msg).encode()


def test_each_bad_message_lands_in_quarantine_with_its_reason(setup):
    store, ingestor, well = setup
    no_eui = json.loads(tts(well, 2))
    del no_eui["end_device_ids"]["dev_eui"]
    bad_b64 = json.loads(tts(well, 3))
    bad_b64["uplink_message"]["frm_payload"] = "@@@"
    cs_bad_counter = render_chirpstack(dev_eui=well.dev_eui, device_id=well.id, f_cnt=4, f_port=1,
                                       time=NOW - 60, payload=GOOD, decoded=None)  # fmt: skip
    cs_bad_counter["fCnt"] = "four"
    join = {"end_device_ids": {"device_id": well.id, "dev_eui": well.dev_eui},
            "received_at": "2024-05-31T23:59:00Z", "join_accept": {"session_key_id": "AX"}}  # fmt: skip
    cases = {
        b'{"end_device_ids": {"dev_eui": ': "invalid_json",
        b"[1, 2, 3]": "invalid_json",
        json.dumps(no_eui).encode(): "schema",
        json.dumps(cs_bad_counter).encode(): "schema",
        b'{"hello": "world"}': "schema",
        json.dumps(join).encode(): "not_uplink",
        tts(well, 5, dev_eui="DEADBEEFDEADBEEF"): "unknown_device",
        json.dumps(bad_b64).encode(): "decode",
        tts(well, 6, payload=GOOD[:-1]): "decode",
        tts(well, 7, f_port=42): "decode",
        # 0xFFFF mm below the reference: the logger's error value, a head far below sea level
        tts(well, 8, payload=bytes.fromhex("FFFF04540DCC")): "out_of_range",
        tts(well, 9, time=NOW + 3600): "clock_skew",
        tts(well, 10, gateway_time=NOW - 60 - 7200): "clock_skew",
    }
    outcomes = ingestor.ingest(list(cases), "test")
    got = [(o.status, o.reason) for o in outcomes]
    assert got == [("quarantined", r) for r in cases.values()]
    s = store.status()
    assert s["messages"] == len(cases) and s["readings"] == 0
    expected: dict[str, int] = {}
    for r in cases.values():
        expected[r] = expected.get(r, 0) + 1
    assert s["quarantine_reasons"] == expected
    kept = {e.body: e for e in store.quarantine(limit=100)}
    assert set(kept) == set(cases)  # the raw message is kept as received, byte for byte
    for body, reason in cases.items():
        assert kept[body].reason == reason and kept[body].detail


def test_duplicates_out_of_order_and_late(setup):
    store, ingestor, well = setup
    first = tts(well, 10)
    again_other_gateway = tts(well, 10, rssi=-119.0)  # same frame, another body
    out = ingestor.ingest([first, first, again_other_gateway, tts(well, 11), tts(well, 8)])
    assert [o.status for o in out] == ["stored", "duplicate", "quarantined", "stored", "stored"]
    assert out[2].reason == "duplicate"
    out2 = ingestor.ingest([tts(well, 12, time=NOW - 2 * 3600), first])
    assert [o.status for o in out2] == ["stored", "duplicate"]
    flags = dict(
        store._conn.execute("SELECT f_cnt, flags FROM uplinks WHERE dev_eui = ?", (well.dev_eui,))
    )
    assert flags == {10: 0, 11: 0, 8: OUT_OF_ORDER, 12: LATE}
    s = store.status()
    assert s["messages"] == 7 and s["distinct_messages"] == 5
    assert s["duplicates"] == 3  # two identical redeliveries and one same-frame copy
    assert s["quarantine_reasons"] == {"duplicate": 1}
    assert s["readings"] == 4 * 3  # head, water temperature, battery per stored uplink
    receipts = store._conn.execute(
        "SELECT receipts FROM raw_messages WHERE body = ?", (first,)
    ).fetchone()[0]
    assert receipts == 3


def test_nothing_is_lost_and_ingest_is_idempotent(setup, tmp_path: Path):
    store, ingestor, well = setup
    bodies = [tts(well, n, time=NOW - 600 + n) for n in range(50)]
    bodies += [b"not json", tts(well, 3, rssi=-1.0), tts(well, 60, dev_eui="0000000000000000")]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(bodies) + b"\n\n")
    first = ingestor.ingest_file(path)
    assert (first.received, first.stored, first.quarantined) == (53, 50, 3)
    before = store.status()
    again = ingestor.ingest_file(path)
    after = store.status()
    assert again.received == 53 and again.stored == 0 and again.duplicates == 53
    for key in ("readings", "uplinks", "quarantined", "quarantine_reasons", "distinct_messages"):
        assert after[key] == before[key], key
    assert after["messages"] == 2 * before["messages"]
    assert after["messages"] == (
        first.stored + first.duplicates + first.quarantined + again.received
    )


def test_values_that_cannot_be_numbers_and_deep_nesting(setup):
    """NaN and Infinity, numbers beyond the float range where a value is used (a decoded field, an
    rssi) and nesting beyond the limit: each quarantined with its own reason and a detail naming
    the field; a byte order mark and numbers of that size in unused fields are accepted."""
    store, ingestor, well = setup

    def decoded(f_cnt: int, level: str) -> bytes:
        msg = json.loads(tts(well, f_cnt))
        del msg["uplink_message"]["frm_payload"]
        fields = '{"level_below_reference": @, "water_temperature": 11.0, "battery": 3.5}'
        text = json.dumps(msg)[:-2] + ', "decoded_payload": ' + fields.replace("@", level) + "}}"
        return text.encode()

    def rssi(f_cnt: int, value: str) -> bytes:
        return tts(well, f_cnt, rssi=-101.0).replace(
            b'"rssi": -101.0', b'"rssi": ' + value.encode()
        )

    deep = json.loads(tts(well, 9))
    deep["uplink_message"]["settings"]["extra"] = "@"
    deep_body = json.dumps(deep).replace('"@"', "[" * 40 + "]" * 40).encode()
    cases = {
        decoded(1, "NaN"): ("not_a_number", "NaN"),
        decoded(2, "-Infinity"): ("not_a_number", "-Infinity"),
        decoded(3, "1e400"): ("overflow", "level_below_reference"),
        decoded(4, "9" * 400): ("overflow", "level_below_reference"),
        rssi(5, "-" + "9" * 400): ("overflow", "rx_metadata[0].rssi"),
        rssi(6, "-1e999"): ("overflow", "rx_metadata[0].rssi"),
        deep_body: ("too_deep", "32"),
        tts(well, 10).replace(well.id.encode(), b"\xff\xfe", 1): ("invalid_json", "UTF-8"),
        b'{"a": ' + b"1" * 5000 + b"}": ("overflow", "4300"),
    }
    fine = [
        b"\xef\xbb\xbf" + tts(well, 20),  # a UTF-8 byte order mark
        tts(well, 21).replace(b'"frequency": "868100000"', b'"frequency": 1e400'),  # unused
        decoded(22, "5.5"),
    ]
    assert b"1e400" in fine[1]
    outcomes = ingestor.ingest(list(cases) + fine, "test")
    for body, o in zip(cases, outcomes, strict=False):
        reason, named = cases[body]
        assert (o.status, o.reason) == ("quarantined", reason), (body[:80], o)
        assert named in o.detail, o.detail
    assert [o.status for o in outcomes[len(cases) :]] == ["stored"] * len(fine)
    kept = {e.body for e in store.quarantine(limit=100)}
    assert kept == set(cases)
