"""pgsteady.lab.engine.networks: the engine is shared, so a network removed between the
listing and the inspect (another lab going down) makes it list again, not fail."""

import subprocess

import pytest

from pgsteady.lab import engine


def test_a_network_gone_between_listing_and_inspect_is_listed_again(monkeypatch):
    listings = iter([["a", "gone"], ["a"]])
    calls = []

    def docker(*args, check=True, **kw):
        calls.append(args)
        if args[:2] == ("network", "ls"):
            return subprocess.CompletedProcess(args, 0, "\n".join(next(listings)), "")
        if "gone" in args:
            return subprocess.CompletedProcess(args, 1, "[]", "Error: No such network: gone")
        return subprocess.CompletedProcess(args, 0, '[{"Name": "a"}]', "")

    monkeypatch.setattr(engine, "docker", docker)
    monkeypatch.setattr(engine.time, "sleep", lambda s: None)
    assert engine.networks() == [{"Name": "a"}]
    assert [c[:2] for c in calls] == [("network", "ls"), ("network", "inspect")] * 2


def test_an_inspect_that_keeps_failing_is_an_error(monkeypatch):
    def docker(*args, check=True, **kw):
        if args[:2] == ("network", "ls"):
            return subprocess.CompletedProcess(args, 0, "x", "")
        return subprocess.CompletedProcess(args, 1, "", "Error: daemon busy")

    monkeypatch.setattr(engine, "docker", docker)
    monkeypatch.setattr(engine.time, "sleep", lambda s: None)
    with pytest.raises(engine.LabError, match="kept failing: Error: daemon busy"):
        engine.networks(attempts=3)
