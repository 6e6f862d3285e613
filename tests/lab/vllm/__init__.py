"""Real vLLM for the lab: the CPU wheelhouse and the tiny models, built once on this machine and published
on the artifact host (``wheels/``, ``models/``) when the lab's engine is vllm. See docs/lab.md."""
