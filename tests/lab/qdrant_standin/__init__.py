"""A stand-in for Qdrant's REST API: collections, points and the snapshot API, field for field.

No Qdrant server can be installed on these machines (not on PyPI, Debian or npm), so backup and restore are
exercised against this: ``QdrantStandin(storage_dir).start()`` in a test, ``python -m lab.qdrant_standin`` on
a lab host. It follows Qdrant's REST documentation for the calls a backup makes (create, list, download and
delete collection and full snapshots, recover from a location, upload a snapshot with a priority and a
checksum) and the few collection and point calls a round trip needs to compare data.
"""

from .server import QdrantStandin

__all__ = ["QdrantStandin"]
