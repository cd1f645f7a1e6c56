"""Alert rules: what matches (text as search reads it, systems, talkgroups, units, tones), when a
rule fires, how a bad rule is refused at load, how targets are redacted and alerts signed."""

from __future__ import annotations

import time

import pytest
import yaml

from rdio_core.alerts import document
from rdio_core.alerts.redact import action_target
from rdio_core.alerts.rules import CallFacts, CompiledRule, call_units
from rdio_core.alerts.settings import AlertRule, AppriseAction, WebhookAction
from rdio_core.settings import ConfigError, load_settings
from tests.test_config import run_cli

HOOK = {"webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s3cret"}}
FACTS = CallFacts(system=11, talkgroup=100, units=frozenset({4021, 77}), tones=None)


def rule(**fields) -> CompiledRule:
    return CompiledRule(AlertRule(**{"name": "r", "actions": [HOOK], **fields}), 1.5)


@pytest.mark.parametrize(
    ("fields", "transcript", "matched"),
    [
        ({"words": ["fire"]}, "Engine 12, working FIRE on Main.", "FIRE"),
        ({"words": ["fire"]}, "no fires reported", None),  # whole words only
        ({"words": ["engin*"]}, "Engines 3 and 4 respond", "Engines"),
        ({"phrases": ["working fire"]}, "we have a working fire", "working fire"),
        ({"phrases": ["working fire"]}, "working on the fire", None),
        # numbers as search normalises them: every spelling of 10-50 is 1 0 5 0
        ({"phrases": ["10-50"]}, "Medic 3 to a ten fifty at the bridge", "ten fifty"),
        ({"words": ["10-50"]}, "copy, 10 50 with injuries", "10 50"),
        ({"phrases": ["ten fifty"]}, "Signal 10-50, two cars", "10-50"),
        ({"phrases": ["twenty one"]}, "Medic 21 en route", "21"),
        ({"patterns": [r"structure\s+fire"]}, "Reported STRUCTURE   fire", "STRUCTURE   fire"),
        # a pattern reads the transcript as written, then the normalised text (numbers as digits)
        ({"patterns": [r"engine \d \d"]}, "Engine twelve responding", "engine 1 2"),
        ({"patterns": [r"Engine \d+[A-Z]"]}, "Engine 12B responding", "Engine 12B"),
        ({"words": ["fire"], "phrases": ["smoke showing"]}, "smoke showing from the roof", "smoke showing"),
        ({"words": ["fire"]}, "", None),
    ],
)
def test_text_matching(fields, transcript, matched):
    assert rule(**fields).match(FACTS, transcript) == matched


def test_restrictions_must_all_hold():
    fire = {"words": ["fire"]}
    said = "working fire"
    assert rule(**fire, systems=[11]).match(FACTS, said) == "fire"
    assert rule(**fire, systems=[12]).match(FACTS, said) is None
    assert rule(**fire, talkgroups=[100, 200]).match(FACTS, said) == "fire"
    assert rule(**fire, talkgroups=[200]).match(FACTS, said) is None
    assert rule(**fire, units=[77]).match(FACTS, said) == "fire"
    assert rule(**fire, units=[5]).match(FACTS, said) is None
    assert rule(talkgroups=[100]).match(FACTS) == "talkgroup 100"
    assert rule(units=[4021, 9]).match(FACTS) == "unit 4021"


def test_tones_by_name_kind_and_frequency():
    page = {
        "kind": "two_tone",
        "frequencies": [1002.3, 1270.7],
        "start": 0.1,
        "end": 3.2,
        "name": "Station 7",
    }
    dtmf = {"kind": "dtmf", "frequencies": [697.0, 1209.0], "start": 4.0, "end": 4.5, "digits": "15"}
    facts = CallFacts(11, 100, frozenset(), (page, dtmf))
    assert rule(tones=["station 7"]).match(facts) == "Station 7 (1002.3 Hz / 1270.7 Hz)"
    assert rule(tones=["dtmf"]).match(facts) == "dtmf 15 (697.0 Hz / 1209.0 Hz)"
    assert rule(tones=[1005.0]).match(facts) is not None  # 0.3 % off: within 1.5 %
    assert rule(tones=[1040.0]).match(facts) is None  # 3.8 % off: another tone of the plan
    assert rule(tones=["Station 9", "long"]).match(facts) is None
    # not analysed yet (None) or analysed with nothing found: no tone rule matches
    assert rule(tones=["station 7"]).match(CallFacts(11, 100, frozenset(), None)) is None
    assert rule(tones=["station 7"]).match(CallFacts(11, 100, frozenset(), ())) is None


def test_stage_follows_the_conditions():
    assert rule(words=["fire"], tones=["x"], talkgroups=[1]).stage == "transcript"
    assert rule(tones=[1002.3], talkgroups=[1]).stage == "tones"
    assert rule(talkgroups=[1], units=[2]).stage == "upload"


def test_units_of_a_call():
    src_list = [{"src": 4021, "pos": 0.0}, {"src": "77", "pos": 1.2}, {"src": 0}, {"tag": "x"}]
    assert call_units(9, src_list) == {9, 4021, 77}
    assert call_units(None, None, [5]) == {5}


def _config(tmp_path, rules) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"alerts": {"rules": rules}}))
    return path


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"name": "a", "patterns": ["engine ("], "actions": [HOOK]}, "not a valid regular expression"),
        ({"name": "a", "words": ["--"], "actions": [HOOK]}, "nothing to match"),
        ({"name": "a", "words": ["x"], "actions": []}, "alerts.rules.0.actions"),
        ({"name": "a", "actions": [{"apprise": "nosuchservice://x"}]}, "Apprise"),
        ({"name": "a", "actions": [{**HOOK, "apprise": "json://localhost"}]}, "either"),
        ({"name": "a", "actions": [{"webhook": {"url": "http://x/h"}}]}, "secret"),
        ({"name": "a", "tones": [-3], "actions": [HOOK]}, "positive"),
        ({"name": "a", "colour": "red", "actions": [HOOK]}, "colour"),
    ],
)
def test_a_bad_rule_stops_the_program_with_one_line(tmp_path, bad, needle):
    path = _config(tmp_path, [bad])
    with pytest.raises(ConfigError, match=needle):
        load_settings(path)
    proc = run_cli("db", "upgrade", "--config", str(path), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "alerts.rules.0" in lines[0], proc.stderr


def test_rule_names_are_unique(tmp_path):
    same = {"name": "dup", "talkgroups": [1], "actions": [HOOK]}
    with pytest.raises(ConfigError, match="two rules are named 'dup'"):
        load_settings(_config(tmp_path, [same, same]))


def test_targets_are_redacted():
    hook = WebhookAction(
        webhook={"url": "https://user:pw@hooks.example.org:8443/in/abc?token=T0K&x=1", "secret": "s"}
    )
    shown = action_target(hook)
    assert shown == "https://***@hooks.example.org:8443/in/abc?token=***&x=***"
    discord = action_target(AppriseAction(apprise="discord://1234567890/SecretTokenValue42"))
    assert discord.startswith("discord://") and "SecretTokenValue42" not in discord and "?" not in discord
    mail = action_target(AppriseAction(apprise="mailtos://alice:hunter2@example.org"))
    assert "hunter2" not in mail


def test_signature_covers_timestamp_and_exact_body():
    body = b'{"rule": "fire"}'
    now = int(time.time())
    signature = document.sign("k", now, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert document.verify("k", str(now), signature, body)
    assert not document.verify("k", str(now), signature, body + b" ")  # one byte changed
    assert not document.verify("other", str(now), signature, body)
    assert not document.verify("k", str(now + 1), signature, body)  # timestamp is signed too
    old = now - 3600
    assert not document.verify("k", str(old), document.sign("k", old, body), body)  # replayed
    assert not document.verify("k", "soon", signature, body)
