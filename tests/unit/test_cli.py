"""The idc-ha command without servers: bad input is explained, nothing is changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idc_ha.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "systemd" / "example.toml"


def test_the_shipped_example_config_is_valid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy/systemd/example.toml passes `check` when the passwords come from the environment."""
    monkeypatch.setenv("IDC_HA_CREDENTIALS__PASSWORD", "x")
    monkeypatch.setenv("IDC_HA_CREDENTIALS__REPLICATION_PASSWORD", "y")
    assert main(["check", "--config", str(EXAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and not [p for p in out["problems"] if p["severity"] == "error"]


def test_check_explains_every_problem_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config with a remote wired to the primary and an unknown machine: exit 1, each problem named."""
    monkeypatch.setenv("IDC_HA_CREDENTIALS__PASSWORD", "x")
    monkeypatch.setenv("IDC_HA_CREDENTIALS__REPLICATION_PASSWORD", "y")
    text = EXAMPLE.read_text()
    text = text.replace('role = "remote"\nupstream = "meta-sx"', 'role = "remote"\nupstream = "meta-m"')
    text = text.replace('machine = "idc2-b"', 'machine = "idc9-x"')
    text = text.replace('state_dir = "/var/lib/idc-ha"', f'state_dir = "{tmp_path / "state"}"')
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["check", "--config", str(cfg), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    fields = " ".join(p["field"] for p in problems)
    assert "(meta-rem).upstream" in fields and "(meta-cas).machine" in fields
    assert all(p["fix"] for p in problems)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "check must not create anything"


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status on a path that does not exist exits 2 and names the flag."""
    assert main(["status", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and "does not exist" in err


def test_pause_of_an_unknown_shard_is_refused_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pause --shard with a typo exits 2, lists the known shards, and leaves the store untouched."""
    monkeypatch.setenv("IDC_HA_CREDENTIALS__PASSWORD", "x")
    monkeypatch.setenv("IDC_HA_CREDENTIALS__REPLICATION_PASSWORD", "y")
    monkeypatch.setenv("IDC_HA_STATE_DIR", str(tmp_path / "state"))
    assert main(["pause", "--config", str(EXAMPLE), "--shard", "metta", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert "metta" in out["error"] and "meta" in out["hint"]
    assert not (tmp_path / "state").exists()


def test_pause_and_resume_go_through_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pause then resume one shard and all shards; the control file says so and the journal records it."""
    monkeypatch.setenv("IDC_HA_CREDENTIALS__PASSWORD", "x")
    monkeypatch.setenv("IDC_HA_CREDENTIALS__REPLICATION_PASSWORD", "y")
    monkeypatch.setenv("IDC_HA_STATE_DIR", str(tmp_path / "state"))
    assert main(["pause", "--config", str(EXAMPLE), "--shard", "meta", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paused_shards"] == ["meta"]
    assert main(["pause", "--config", str(EXAMPLE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paused"] is True
    assert main(["resume", "--config", str(EXAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["paused"] is False and out["paused_shards"] == []
    events = [json.loads(line)["event"] for line in (tmp_path / "state" / "journal.jsonl").read_text().splitlines()]
    assert events == ["pause", "pause", "resume"]
