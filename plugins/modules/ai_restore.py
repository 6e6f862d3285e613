# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ai_restore
short_description: Restore a backup made by ai_backup, after verifying every byte of it
version_added: 0.1.0
description:
  - Fetches a backup (the latest, or one by id) from a local directory or S3-compatible storage and restores
    the chosen sources (O(sources)) in place or to other targets.
  - Before anything outside its scratch directory is written, the module checks the manifest, the sha256 and
    size of every part, and the encryption key. A damaged backup or a wrong key fails with nothing changed.
    While staging, every file is checked against its own sha256 from the manifest.
  - Parts in a local directory (O(destination.path)) are read in place. Parts in S3 (O(destination.s3)) are
    downloaded to O(work_dir) and checked there.
  - Compares the backup with what is in place first and changes only what differs, so a second run reports
    no change. Check mode is the dry run; it lists what would change (RV(changes)).
  - V(directory) sources are restored whole into a sibling directory that is then swapped in by rename, so a
    failure leaves the old data. V(config) files are replaced one by one atomically, with their mode and owner;
    other files are left alone. V(models) blobs already present with the right sha256 are kept; missing blobs go
    in before the manifests that name them. V(postgres) databases are restored with
    C(pg_restore --single-transaction) (created when missing). V(qdrant) collections are recovered by uploading
    their snapshot with O(qdrant.priority).
  - Owners are restored by user and group name (numbers when the name is unknown) when the module runs as root.
author:
  - Namtech platform engineering (@namtech)
options:
  name:
    description:
      - The backup set (O(namtech.internal_ai.ai_backup#module:name) of the backup).
    type: str
    default: ai
  backup:
    description:
      - V(latest) (what the set's C(latest) pointer names), or a backup id such as V(20261127T021500Z-node1).
    type: str
    default: latest
  sources:
    description:
      - The names of the sources to restore; all of the backup's sources when empty.
    type: list
    elements: str
  encryption_key:
    description:
      - The key the backup was encrypted with. Never logged.
    type: str
  work_dir:
    description:
      - Where the scratch directory goes (downloaded parts from S3, dumps and snapshots on their way); the system's
        temporary directory when not set. With S3 it needs room for the whole backup.
    type: path
  directory_paths:
    description:
      - V(directory) sources restored elsewhere than where they were backed up from, as a dict of source name to
        path, for example source V(chroma) to V(/var/lib/chroma-check).
    type: dict
  config_root:
    description:
      - V(config) files are restored to this directory joined with their original absolute path. Another root
        than V(/) restores a copy for comparison.
    type: path
    default: /
  models_dir:
    description:
      - V(models) the Ollama model store to restore into; the one backed up from when not set.
    type: path
  postgres:
    description:
      - Where V(postgres) sources are restored.
    type: dict
    suboptions:
      host:
        description: The server's host name or Unix socket directory; libpq's default when not set.
        type: str
      port:
        description: The server's port; libpq's default (5432) when not set.
        type: int
      user:
        description: The user to connect as; it must be allowed to create databases when they are missing.
        type: str
      password:
        description: The password, passed in C(PGPASSWORD). Never logged.
        type: str
      bin_dir:
        description: The directory of C(pg_restore), C(psql) and C(createdb); the search path when not set.
        type: path
      databases:
        description:
          - Restore a database under another name (a dict of dumped name to target name), for example V(rag)
            into V(rag_restored). Others keep their name.
        type: dict
      create:
        description: Create a target database that does not exist.
        type: bool
        default: true
      clean:
        description:
          - Drop the objects of the dump before recreating them (C(pg_restore --clean --if-exists)), so a restore
            over an existing database replaces them. In one transaction with the restore.
        type: bool
        default: true
      no_owner:
        description: Do not set the objects' owners (C(pg_restore --no-owner)), when the original roles are missing.
        type: bool
        default: false
  qdrant:
    description:
      - Where V(qdrant) sources are restored.
    type: dict
    suboptions:
      url:
        description: Qdrant's REST address; the one backed up from when not set.
        type: str
      api_key:
        description: The API key (C(api-key) header). Never logged.
        type: str
      validate_certs:
        description: Verify the server's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the server's certificate.
        type: path
      timeout:
        description: Seconds to wait for each answer (the upload waits for the recovery).
        type: float
        default: 300.0
      priority:
        description:
          - Qdrant's recovery priority. V(snapshot) makes the snapshot's data win over what the cluster has,
            which is what a restore wants; V(replica) prefers existing replicas; V(no_sync) skips synchronisation.
        type: str
        choices: [snapshot, replica, no_sync]
        default: snapshot
      collections:
        description:
          - Recover a collection under another name (a dict of backed-up name to target name), for example V(docs)
            into V(docs_check).
        type: dict
      full_snapshot_dir:
        description:
          - Where to put a full (storage) snapshot. Qdrant recovers those only when it starts
            (C(qdrant --storage-snapshot FILE)), so the module copies the file there.
        type: path
attributes:
  check_mode:
    support: full
    description: Verifies the backup and lists what would change (the dry run); changes nothing.
  diff_mode:
    support: none
    description: RV(changes) lists what changes; file contents are not diffed.
  platform:
    support: full
    platforms: posix
    description: Runs on the node the data goes back to (Linux).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - namtech.internal_ai.backup_destination
notes:
  - A restore of V(directory) and V(config) sources should run with the services that use them stopped.
  - Needs boto3 for an S3 destination, cryptography for an encrypted backup, httpx for qdrant, and the
    PostgreSQL client programs for postgres.
requirements:
  - cryptography (encrypted backups)
  - httpx (qdrant)
seealso:
  - module: namtech.internal_ai.ai_backup
"""

EXAMPLES = r"""
- name: What would a restore of the latest backup change?
  namtech.internal_ai.ai_restore:
    name: "{{ inventory_hostname }}"
    destination:
      path: /srv/backups
    encryption_key: "{{ vault_backup_key }}"
  check_mode: true
  register: plan

- name: Restore Chroma and the models of a named backup from MinIO
  namtech.internal_ai.ai_restore:
    name: node1
    backup: 20261127T021500Z-node1
    sources: [chroma, models]
    destination:
      s3:
        endpoint_url: https://minio.example.com:9000
        bucket: ai-backups
        addressing_style: path
        access_key: "{{ vault_s3_access_key }}"
        secret_key: "{{ vault_s3_secret_key }}"
    encryption_key: "{{ vault_backup_key }}"

- name: Restore the RAG database beside the live one, to compare
  namtech.internal_ai.ai_restore:
    destination:
      path: /srv/backups
    sources: [postgres]
    postgres:
      user: postgres
      databases:
        rag: rag_restored

- name: Restore the config under /tmp/check to compare it with what runs
  namtech.internal_ai.ai_restore:
    destination:
      path: /srv/backups
    sources: [config]
    config_root: /tmp/check
"""

RETURN = r"""
backup_id:
  description: The backup restored (or checked).
  returned: always
  type: str
  sample: 20261127T021500Z-node1
location:
  description: Where the set's backups are.
  returned: always
  type: str
backup:
  description: The backup's manifest without the per-file lists (host, times, parts, sources, engine).
  returned: always
  type: dict
verified_parts:
  description: How many parts were checked against their sha256.
  returned: always
  type: int
sources:
  description: The sources restored (or that would be).
  returned: always
  type: list
  elements: str
changes:
  description:
    - What differs from the backup, one item per change, each with C(source) and C(action) (V(create),
      V(replace), V(update), V(add blob), V(restore database), V(recover collection)...) and what it applies
      to (C(path), C(database), C(collection)). Empty when everything already matches.
  returned: always
  type: list
  elements: dict
restored:
  description: The sources whose changes were applied (empty in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import exit_with_result, module_runner
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.options import (
    check_libraries,
    destination_spec,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.qdrant import PRIORITIES
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.restore import RestoreJob, run_restore
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import fail_on_nul_bytes_in_paths


def argument_spec():
    return dict(
        name=dict(type="str", default="ai"),
        backup=dict(type="str", default="latest"),
        sources=dict(type="list", elements="str"),
        destination=destination_spec(),
        encryption_key=dict(type="str", no_log=True),
        work_dir=dict(type="path"),
        directory_paths=dict(type="dict"),
        config_root=dict(type="path", default="/"),
        models_dir=dict(type="path"),
        postgres=dict(type="dict", options=dict(
            host=dict(type="str"),
            port=dict(type="int"),
            user=dict(type="str"),
            password=dict(type="str", no_log=True),
            bin_dir=dict(type="path"),
            databases=dict(type="dict"),
            create=dict(type="bool", default=True),
            clean=dict(type="bool", default=True),
            no_owner=dict(type="bool", default=False),
        )),
        qdrant=dict(type="dict", options=dict(
            url=dict(type="str"),
            api_key=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            timeout=dict(type="float", default=300.0),
            priority=dict(type="str", choices=list(PRIORITIES), default="snapshot"),
            collections=dict(type="dict"),
            full_snapshot_dir=dict(type="path"),
        )),
    )


def targets_from_params(params):
    by_name = dict((name, {"path": path}) for name, path in (params["directory_paths"] or {}).items())
    return {
        "by_name": by_name,
        "config": {"root": params["config_root"]},
        "models": {"models_dir": params["models_dir"]},
        "postgres": params["postgres"] or {},
        "qdrant": params["qdrant"] or {},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    fail_on_nul_bytes_in_paths(module)
    check_libraries(module, params["destination"], params["encryption_key"])
    for name, path in (params["directory_paths"] or {}).items():
        if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
            module.fail_json(msg="directory_paths.%s must be an absolute path (got %r)" % (name, path))

    def restore():
        # Built here so that an invalid name or target fails the module with its sentence, not a traceback.
        job = RestoreJob(name=params["name"], destination=params["destination"], backup=params["backup"],
                         sources=params["sources"], encryption_key=params["encryption_key"],
                         work_dir=params["work_dir"], targets=targets_from_params(params),
                         run_command=module_runner(module))
        return run_restore(job, check_mode=module.check_mode)

    exit_with_result(module, restore)


if __name__ == "__main__":
    main()
