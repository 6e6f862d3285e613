# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ai_backup
short_description: Back up vector stores, databases, config and Ollama models of an AI node
version_added: 0.1.0
description:
  - Makes one backup of any combination of sources (O(sources)) into a local directory or S3-compatible
    storage (O(destination)), applies a retention policy (O(retention)) and writes node_exporter textfile
    metrics (O(metrics_dir)).
  - A backup is one tar stream (optionally gzip-compressed and encrypted) cut into parts of at most
    O(split_size_mb), and a manifest that lists every part with its size and sha256, every source's files
    with their size, sha256, mode and owner, the host, the start and end time, the engine's version and
    models, and the collection version.
  - Everything streams through a bounded buffer, so memory does not grow with the size of the backup.
    Dumps and snapshots, and parts bound for S3, pass through a scratch directory (O(work_dir)).
  - In a local directory (O(destination.path)) parts are written in place and published by renaming their
    directory. Parts for S3 (O(destination.s3)) are spooled to O(work_dir), uploaded (multipart above
    O(destination.s3.part_size_mb)) and checked (size and sha256 metadata) before the manifest is written.
  - A backup becomes visible only when complete. The manifest is written after every part is stored
    and verified, then the C(latest) pointer is updated. A failed run removes what it stored and leaves
    C(latest) as it was; a part left behind (storage unreachable) has no manifest, so restore ignores it
    and retention removes it later.
  - Layout in the destination, for both kinds, is C(<root>/<name>/<backup id>/part-00001...),
    C(<root>/<name>/<backup id>/manifest.json), C(<root>/<name>/latest). A backup id is the UTC start time
    and the host, for example C(20261127T021500Z-node1), so ids sort by time.
  - O(action=list) lists the backups, O(action=prune) only applies O(retention).
author:
  - Namtech platform engineering (@namtech)
options:
  action:
    description:
      - V(backup) makes a backup, then applies O(retention) when it is given.
      - V(list) returns the backups in O(destination) and changes nothing.
      - V(prune) applies O(retention) without making a backup.
    type: str
    choices: [backup, list, prune]
    default: backup
  name:
    description:
      - The backup set. Backups of a set live under O(destination) in a directory (or key prefix) of this name,
        and retention and metrics (label C(backup)) are per set.
      - Give every host its own set when hosts share a destination, for example C("{{ inventory_hostname }}").
    type: str
    default: ai
  sources:
    description:
      - What to back up, in this order. Required with O(action=backup).
      - Each source's options depend on its O(sources[].type); an option for another type is an error.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The source's name in the backup (unique); restore selects sources by it. Defaults to the type.
        type: str
      type:
        description:
          - V(directory) a store kept as files (Chroma, LanceDB, FAISS indexes), the whole tree.
          - V(config) files by paths and globs (system prompts, guardrails, Modelfiles, environment files,
            HAProxy, Prometheus and Alertmanager configs, release records), restored to the same paths.
          - V(models) the manifests and blobs of Ollama models, each blob once (Ollama cannot pull by digest).
          - V(postgres) databases (pgvector included) as C(pg_dump) custom-format archives.
          - V(qdrant) Qdrant collection snapshots (or a full snapshot) through its snapshot API.
        type: str
        required: true
        choices: [directory, config, models, postgres, qdrant]
      path:
        description:
          - V(directory) the absolute path of the directory.
        type: path
      paths:
        description:
          - V(config) absolute paths and globs (C(**) recurses); a directory is taken with all it holds.
        type: list
        elements: path
      exclude:
        description:
          - V(directory) and V(config) shell patterns matched against paths (relative to O(sources[].path) for
            a directory) and base names; matches are left out.
        type: list
        elements: str
      ignore_missing:
        description:
          - V(config) a literal path that does not exist is skipped with a warning instead of failing.
        type: bool
        default: false
      models_dir:
        description:
          - V(models) the Ollama model store (C(OLLAMA_MODELS)). When not set, V(/usr/share/ollama/.ollama/models).
        type: path
      models:
        description:
          - V(models) the models as C(ollama pull) names them (V(llama3.2:3b)); all models in the store when empty.
        type: list
        elements: str
      databases:
        description:
          - V(postgres) the databases to dump.
        type: list
        elements: str
      host:
        description:
          - V(postgres) the server's host name or Unix socket directory; libpq's default when not set.
        type: str
      port:
        description:
          - V(postgres) the server's port; libpq's default (5432) when not set.
        type: int
      user:
        description:
          - V(postgres) the user to connect as.
        type: str
      password:
        description:
          - V(postgres) the password, passed to the client programs in C(PGPASSWORD). Never logged.
        type: str
      bin_dir:
        description:
          - V(postgres) the directory of C(pg_dump), for example V(/usr/lib/postgresql/15/bin); the search path
            when not set.
        type: path
      url:
        description:
          - V(qdrant) Qdrant's REST address, for example V(http://127.0.0.1:6333).
        type: str
      api_key:
        description:
          - V(qdrant) the API key (C(api-key) header). Never logged.
        type: str
      collections:
        description:
          - V(qdrant) the collections to snapshot; a full (storage) snapshot when empty.
        type: list
        elements: str
      validate_certs:
        description:
          - V(qdrant) verify the server's TLS certificate. When not set, V(true).
        type: bool
      ca_path:
        description:
          - V(qdrant) PEM file of the CA that signed the server's certificate.
        type: path
      timeout:
        description:
          - V(qdrant) seconds to wait for each answer (snapshot creation waits for the snapshot). When not set,
            V(300).
        type: float
      stop_services:
        description:
          - systemd services to stop while this source is read, for a consistent copy (Chroma). Only services
            that run are stopped, and they are started again afterwards, also when the backup fails.
        type: list
        elements: str
      pre_command:
        description:
          - A command (argument list, no shell) to run before this source is read, for example a flush.
            It runs before O(sources[].stop_services) stops anything; the backup fails when it fails.
        type: list
        elements: str
      post_command:
        description:
          - A command (argument list, no shell) to run after this source is read, also when the backup
            failed, after the services are started again.
        type: list
        elements: str
  split_size_mb:
    description:
      - The largest part of the archive, in MiB. Bounds the scratch space an S3 upload needs.
    type: int
    default: 1024
  compression:
    description:
      - Compress the archive with gzip. Model weights and vector indexes hardly compress; config and dumps do.
    type: str
    choices: [none, gzip]
    default: none
  encryption_key:
    description:
      - Encrypt the archive on this host (AES-256-GCM in authenticated frames, key derived with scrypt and a
        random salt per backup). At least 16 characters; keep it in Ansible Vault. Never logged.
      - The manifest stays readable (names, sizes, checksums) so backups can be listed and pruned without the key.
      - Restore needs the same key. A lost key means a lost backup.
    type: str
  retention:
    description:
      - Which backups of the set to keep after a successful run (and with O(action=prune)). Rules add up; a backup
        kept by any rule stays. Days, weeks and months are UTC. The newest complete backup and the one C(latest)
        names are never deleted. Without any C(keep_*) rule nothing is deleted.
      - Incomplete backups (no manifest) older than the newest complete one are deleted.
    type: dict
    suboptions:
      keep_last:
        description: Keep the newest N backups.
        type: int
      keep_daily:
        description: Keep the newest backup of each of the last N days that have one.
        type: int
      keep_weekly:
        description: Keep the newest backup of each of the last N ISO weeks that have one.
        type: int
      keep_monthly:
        description: Keep the newest backup of each of the last N months that have one.
        type: int
      dry_run:
        description: Only report what the policy would delete.
        type: bool
        default: false
  metrics_dir:
    description:
      - node_exporter's textfile collector directory (C(node_exporter_textfile_dir)). The module updates
        C(namtech_backup.prom) there atomically with C(namtech_backup_last_success_timestamp_seconds),
        C(namtech_backup_last_failure_timestamp_seconds), C(namtech_backup_duration_seconds) and
        C(namtech_backup_size_bytes), label C(backup) = O(name). A failed run updates only the failure time.
      - No metrics when not set.
    type: path
  work_dir:
    description:
      - Where the scratch directory goes (dumps, snapshots, parts on their way to S3); the system's temporary
        directory when not set. Needs room for the largest dump or snapshot, plus O(split_size_mb) with S3.
    type: path
  engine_url:
    description:
      - An Ollama server whose version and models (with digests) the manifest records. Failing to reach it is a
        warning, not a failure.
    type: str
  host:
    description:
      - The host name recorded in the manifest and the backup id; this host's name when not set.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports what each source would back up and what retention would delete; writes nothing.
  diff_mode:
    support: none
    description: A backup adds a new object; there is nothing to compare.
  platform:
    support: full
    platforms: posix
    description: Runs on the node that holds the data (Linux).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - namtech.internal_ai.backup_destination
notes:
  - The module runs where the data is (the node). C(pg_dump) and C(systemctl) run as argument lists, never
    through a shell.
  - Needs boto3 for an S3 destination, cryptography for O(encryption_key), httpx for qdrant and O(engine_url).
requirements:
  - cryptography (encryption)
  - httpx (qdrant, engine_url)
seealso:
  - module: namtech.internal_ai.ai_restore
"""

EXAMPLES = r"""
- name: Back up Chroma, the config, a pinned model and a pgvector database to MinIO, encrypted
  namtech.internal_ai.ai_backup:
    name: "{{ inventory_hostname }}"
    sources:
      - type: directory
        name: chroma
        path: /var/lib/chroma
        stop_services: [chroma]
      - type: config
        paths:
          - /etc/namtech/prompts
          - /etc/systemd/system/ollama.service.d/*.conf
          - /etc/haproxy/haproxy.cfg
        ignore_missing: true
      - type: models
        models: [llama3.2:3b, assistant:latest]
      - type: postgres
        databases: [rag]
        user: backup
        password: "{{ vault_pg_backup_password }}"
    destination:
      s3:
        endpoint_url: https://minio.example.com:9000
        bucket: ai-backups
        addressing_style: path
        access_key: "{{ vault_s3_access_key }}"
        secret_key: "{{ vault_s3_secret_key }}"
    encryption_key: "{{ vault_backup_key }}"
    retention:
      keep_last: 3
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 6
    metrics_dir: /var/lib/prometheus/node-exporter
    engine_url: http://127.0.0.1:11434
  register: backup

- name: Snapshot two Qdrant collections to a local disk
  namtech.internal_ai.ai_backup:
    name: qdrant
    sources:
      - type: qdrant
        url: http://127.0.0.1:6333
        api_key: "{{ vault_qdrant_api_key }}"
        collections: [docs, tickets]
    destination:
      path: /srv/backups

- name: What would the policy delete?
  namtech.internal_ai.ai_backup:
    action: prune
    destination:
      path: /srv/backups
    retention:
      keep_daily: 14
  check_mode: true
"""

RETURN = r"""
backup_id:
  description: The id of the backup made (in check mode, the id it would have).
  returned: when O(action=backup)
  type: str
  sample: 20261127T021500Z-node1
location:
  description: Where the set's backups are (a directory or an s3:// URL).
  returned: always
  type: str
  sample: s3://ai-backups/node1
size:
  description: Bytes stored (all parts).
  returned: when a backup was made
  type: int
parts:
  description: The archive's parts.
  returned: when a backup was made
  type: list
  elements: dict
  contains:
    name:
      description: The part's name.
      type: str
    size:
      description: Its size in bytes.
      type: int
    sha256:
      description: Its sha256 (hex).
      type: str
sources:
  description:
    - What each source holds (from the manifest, without the per-file lists), with C(file_count) and C(bytes).
    - In check mode, what each source would back up.
  returned: when O(action=backup)
  type: list
  elements: dict
encrypted:
  description: Whether the archive is encrypted.
  returned: when a backup was made
  type: bool
started_at:
  description: UTC start time (ISO 8601).
  returned: when a backup was made
  type: str
finished_at:
  description: UTC end time (ISO 8601).
  returned: when a backup was made
  type: str
duration:
  description: Seconds the backup took.
  returned: when a backup was made
  type: float
retention:
  description: What the retention policy kept (with the rules that kept each) and deleted (or would delete).
  returned: when O(retention) is given, and in check mode
  type: dict
  contains:
    keep:
      description: The backups kept, newest first, each with C(id) and C(reasons).
      type: list
      elements: dict
    delete:
      description: The backups deleted, newest first, each with C(id) and C(complete).
      type: list
      elements: dict
metrics_file:
  description: The textfile the metrics were written to.
  returned: when O(metrics_dir) is given and a backup was made
  type: str
backups:
  description: The set's backups, newest first, each with C(id) and C(complete) (false when interrupted).
  returned: when O(action=list)
  type: list
  elements: dict
latest:
  description: The id the C(latest) pointer names.
  returned: when O(action=list)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import exit_with_result, module_runner
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.manifest import COLLECTION_VERSION
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.options import (
    check_libraries,
    destination_spec,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.run import (
    BackupJob,
    list_backups,
    plan_backup,
    prune,
    run_backup,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import fail_on_nul_bytes_in_paths


def source_spec():
    return dict(
        name=dict(type="str"),
        type=dict(type="str", required=True, choices=["directory", "config", "models", "postgres", "qdrant"]),
        path=dict(type="path"),
        paths=dict(type="list", elements="path"),
        exclude=dict(type="list", elements="str"),
        ignore_missing=dict(type="bool", default=False),
        models_dir=dict(type="path"),
        models=dict(type="list", elements="str"),
        databases=dict(type="list", elements="str"),
        host=dict(type="str"),
        port=dict(type="int"),
        user=dict(type="str"),
        password=dict(type="str", no_log=True),
        bin_dir=dict(type="path"),
        url=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        collections=dict(type="list", elements="str"),
        validate_certs=dict(type="bool"),
        ca_path=dict(type="path"),
        timeout=dict(type="float"),
        stop_services=dict(type="list", elements="str"),
        pre_command=dict(type="list", elements="str"),
        post_command=dict(type="list", elements="str"),
    )


def argument_spec():
    return dict(
        action=dict(type="str", choices=["backup", "list", "prune"], default="backup"),
        name=dict(type="str", default="ai"),
        sources=dict(type="list", elements="dict", options=source_spec()),
        destination=destination_spec(),
        split_size_mb=dict(type="int", default=1024),
        compression=dict(type="str", choices=["none", "gzip"], default="none"),
        encryption_key=dict(type="str", no_log=True),
        retention=dict(type="dict", options=dict(
            keep_last=dict(type="int"),
            keep_daily=dict(type="int"),
            keep_weekly=dict(type="int"),
            keep_monthly=dict(type="int"),
            dry_run=dict(type="bool", default=False),
        )),
        metrics_dir=dict(type="path"),
        work_dir=dict(type="path"),
        engine_url=dict(type="str"),
        host=dict(type="str"),
    )


def job_from_params(module):
    params = module.params
    return BackupJob(
        name=params["name"], sources=params["sources"], destination=params["destination"],
        split_size_mb=params["split_size_mb"], compression=params["compression"],
        encryption_key=params["encryption_key"], retention=params["retention"], metrics_dir=params["metrics_dir"],
        work_dir=params["work_dir"], engine_url=params["engine_url"], host=params["host"],
        collection_version=COLLECTION_VERSION, run_command=module_runner(module))


def run(module, job):
    action = module.params["action"]
    if action == "list":
        return list_backups(job)
    if action == "prune":
        if not job.retention:
            module.fail_json(msg="action=prune needs retention (keep_last, keep_daily, keep_weekly, keep_monthly)")
        return prune(job, check_mode=module.check_mode)
    if not module.params["sources"]:
        module.fail_json(msg="action=backup needs sources: list at least one source to back up")
    if module.check_mode:
        return plan_backup(job)
    return run_backup(job)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    fail_on_nul_bytes_in_paths(module)
    check_libraries(module, module.params["destination"], module.params["encryption_key"])
    exit_with_result(module, lambda: run(module, job_from_params(module)))


if __name__ == "__main__":
    main()
