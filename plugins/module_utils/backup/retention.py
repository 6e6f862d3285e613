# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which backups to keep: the newest N, and the newest of each of the last N days, ISO weeks and months (UTC).

A pure function of the backup ids (which start with their UTC time). The newest complete backup, and the one
the latest pointer names, are always kept. Without any ``keep_*`` rule nothing is deleted. Incomplete backups
(interrupted, no manifest) older than the newest complete one are deleted; a newer one may still be running.
"""

from __future__ import annotations

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError, backup_time

RULES = (
    ("daily", "keep_daily", lambda moment: moment.date()),
    ("weekly", "keep_weekly", lambda moment: tuple(moment.isocalendar())[:2]),
    ("monthly", "keep_monthly", lambda moment: (moment.year, moment.month)),
)
POLICY_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


def check_policy(policy):
    for key in POLICY_KEYS:
        value = (policy or {}).get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise BackupError("retention.%s must be a whole number of 0 or more (got %r)" % (key, value))


def plan_retention(backups, policy, latest=None):
    """``{"keep": [{"id", "reasons"}], "delete": [{"id", "complete"}]}``, both newest first.

    ``backups`` is what a store lists: ``{"id", "complete"}`` each.
    """
    check_policy(policy)
    policy = policy or {}
    complete = sorted((item["id"] for item in backups if item["complete"]), reverse=True)
    reasons = dict((backup_id, []) for backup_id in complete)
    if complete:
        reasons[complete[0]].append("newest")
    if latest in reasons and latest != complete[0]:
        reasons[latest].append("latest pointer")
    if not any(policy.get(key) for key in POLICY_KEYS):
        for backup_id in complete[1:]:
            reasons[backup_id].append("no retention rule")
    for backup_id in complete[:policy.get("keep_last") or 0]:
        reasons[backup_id].append("last")
    for label, key, bucket_of in RULES:
        _keep_newest_per_bucket(complete, policy.get(key) or 0, label, bucket_of, reasons)
    keep = [{"id": backup_id, "reasons": reasons[backup_id]} for backup_id in complete if reasons[backup_id]]
    delete = [{"id": backup_id, "complete": True} for backup_id in complete if not reasons[backup_id]]
    newest = complete[0] if complete else None
    delete += [{"id": item["id"], "complete": False}
               for item in sorted(backups, key=lambda entry: entry["id"], reverse=True)
               if not item["complete"] and newest is not None and item["id"] < newest]
    return {"keep": keep, "delete": sorted(delete, key=lambda entry: entry["id"], reverse=True)}


def _keep_newest_per_bucket(complete, count, label, bucket_of, reasons):
    """Walk from the newest: the first backup seen in each bucket (day, week, month) is kept, ``count`` buckets."""
    buckets = []
    for backup_id in complete:
        if len(buckets) >= count:
            return
        bucket = bucket_of(backup_time(backup_id))
        if bucket in buckets:
            continue
        buckets.append(bucket)
        reasons[backup_id].append(label)


def apply_retention(store, policy, dry_run=False):
    """Plan against what the store holds and (unless ``dry_run``) delete; the plan."""
    plan = plan_retention(store.backups(), policy, latest=store.latest())
    if not dry_run:
        for item in plan["delete"]:
            store.delete(item["id"], complete=item["complete"])
    return plan
