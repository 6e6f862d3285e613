"""Lab artifacts: the lab's model registry and the lab engine's release archives (tests only).

``build.build_artifact_tree(dest)`` writes the tree; ``server.py`` serves it (see docs/lab-engine.md).
"""
