"""Retention: exactly the backups the policy names are kept, across a simulated month of daily backups."""

from __future__ import annotations

import datetime as dt

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup import run as run_module_utils
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError, subprocess_runner
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.retention import plan_retention
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.run import BackupJob, run_backup
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.stores import LocalStore
from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup

POLICY = {"keep_last": 2, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3}
# Daily backups at 02:15 UTC from 2026-09-01 to 2026-10-31 (a Saturday, ISO week 44):
# last 2 -> 10-31, 10-30; daily 7 -> 10-25 .. 10-31; weekly 4 -> week 44: 10-31, week 43: Sunday 10-25,
# week 42: Sunday 10-18, week 41: Sunday 10-11; monthly 3 -> October: 10-31, September: 09-30 (no August).
EXPECTED = ["20261031T021500Z-node1", "20261030T021500Z-node1", "20261029T021500Z-node1", "20261028T021500Z-node1",
            "20261027T021500Z-node1", "20261026T021500Z-node1", "20261025T021500Z-node1", "20261018T021500Z-node1",
            "20261011T021500Z-node1", "20260930T021500Z-node1"]


def daily(first, last):
    day = dt.date.fromisoformat(first)
    while day <= dt.date.fromisoformat(last):
        yield "%sT021500Z-node1" % day.strftime("%Y%m%d")
        day += dt.timedelta(days=1)


def complete(ids):
    return [{"id": backup_id, "complete": True} for backup_id in ids]


def test_two_months_of_daily_backups_keep_exactly_what_the_policy_names():
    plan = plan_retention(complete(daily("2026-09-01", "2026-10-31")), POLICY)
    assert [item["id"] for item in plan["keep"]] == EXPECTED
    assert len(plan["delete"]) == 61 - len(EXPECTED)
    reasons = dict((item["id"], item["reasons"]) for item in plan["keep"])
    assert reasons["20261031T021500Z-node1"] == ["newest", "last", "daily", "weekly", "monthly"]
    assert reasons["20261025T021500Z-node1"] == ["daily", "weekly"]
    assert reasons["20260930T021500Z-node1"] == ["monthly"]


def test_without_rules_nothing_is_deleted():
    plan = plan_retention(complete(daily("2026-10-01", "2026-10-05")), {})
    assert plan["delete"] == [] and len(plan["keep"]) == 5


def test_the_newest_backup_and_the_latest_pointer_are_always_kept():
    backups = complete(["20261001T021500Z-node1", "20261002T021500Z-node1", "20261003T021500Z-node1"])
    plan = plan_retention(backups, {"keep_last": 1}, latest="20261002T021500Z-node1")
    assert plan["keep"] == [{"id": "20261003T021500Z-node1", "reasons": ["newest", "last"]},
                            {"id": "20261002T021500Z-node1", "reasons": ["latest pointer"]}]
    assert plan["delete"] == [{"id": "20261001T021500Z-node1", "complete": True}]


def test_rules_of_zero_count_as_no_rule():
    plan = plan_retention(complete(daily("2026-10-01", "2026-10-03")), dict.fromkeys(POLICY, 0))
    assert plan["delete"] == []


def test_incomplete_backups_go_unless_newer_than_the_newest_complete_one():
    backups = [*complete(["20261002T021500Z-node1"]), {"id": "20261001T021500Z-node1", "complete": False},
               {"id": "20261003T021500Z-node1", "complete": False}]
    plan = plan_retention(backups, {"keep_last": 1})
    assert plan["delete"] == [{"id": "20261001T021500Z-node1", "complete": False}]


def test_a_negative_rule_is_refused():
    with pytest.raises(BackupError, match=r"^retention.keep_daily must be a whole number of 0 or more \(got -1\)$"):
        plan_retention([], {"keep_daily": -1})


def test_a_simulated_month_of_daily_runs_keeps_what_the_policy_says(tmp_path, monkeypatch):
    """Real backups, one a day, each applying retention, as the backup role's timer would run them."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "index.bin").write_bytes(b"vectors")
    days = iter(dt.datetime(2026, 9, 1, 2, 15, tzinfo=dt.timezone.utc) + dt.timedelta(days=offset)
                for offset in range(61))
    clock = {"now": None}
    monkeypatch.setattr(run_module_utils, "utc_now", lambda: clock["now"])
    job = BackupJob(name="ai", sources=[{"type": "directory", "name": "chroma", "path": str(data)}],
                    destination={"path": str(tmp_path / "backups")}, retention=POLICY, host="node1",
                    run_command=subprocess_runner)
    for moment in days:
        clock["now"] = moment
        result = run_backup(job)
        assert result["retention"]["keep"][0]["id"] == result["backup_id"]
    store = LocalStore(str(tmp_path / "backups"), "ai")
    assert [item["id"] for item in store.backups()] == EXPECTED
    assert store.latest() == "20261031T021500Z-node1"
    assert sorted(path.name for path in (tmp_path / "backups" / "ai").iterdir()) == sorted([*EXPECTED, "latest"])


def make_fake_backups(root, ids):
    for backup_id in ids:
        (root / "ai" / backup_id).mkdir(parents=True)
        (root / "ai" / backup_id / "manifest.json").write_text("{}")
        (root / "ai" / backup_id / "part-00001").write_text("x")


def test_prune_in_check_mode_is_a_dry_run(tmp_path, run_module):
    make_fake_backups(tmp_path, daily("2026-09-01", "2026-10-31"))
    args = {"action": "prune", "destination": {"path": str(tmp_path)}, "retention": POLICY}
    dry = run_module(ai_backup, args, check_mode=True)
    assert dry["exit_code"] == 0 and dry["changed"] is True
    assert len(dry["retention"]["delete"]) == 51 and len(list((tmp_path / "ai").iterdir())) == 61
    dry_option = run_module(ai_backup, dict(args, retention=dict(POLICY, dry_run=True)))
    assert dry_option["changed"] is False and len(list((tmp_path / "ai").iterdir())) == 61
    pruned = run_module(ai_backup, args)
    assert pruned["changed"] is True
    assert sorted(path.name for path in (tmp_path / "ai").iterdir()) == sorted(EXPECTED)
    again = run_module(ai_backup, args)
    assert again["changed"] is False and again["retention"]["delete"] == []


def test_prune_needs_a_policy(tmp_path, run_module):
    result = run_module(ai_backup, {"action": "prune", "destination": {"path": str(tmp_path)}})
    assert result["failed"] is True
    assert result["msg"] == "action=prune needs retention (keep_last, keep_daily, keep_weekly, keep_monthly)"
