"""The vllm role's settings for a vllm lab: install from the artifact host's wheelhouse, models from its archives."""

from lab.vllm.wheelhouse import VLLM_PACKAGE, VLLM_VERSION

LAB_API_KEY = "lab-vllm-key"  # the lab's stand-in for a key kept in ansible-vault
LAB_PORT = 8000


def lab_model(served_name: str, archive: str, port: int = LAB_PORT) -> dict:
    """A vllm_models entry serving the lab archive ``models/<archive>.tar.gz`` under ``served_name``."""
    return {
        "name": served_name,
        "port": port,
        "archive_url": f"{{{{ lab_vllm_models_url }}}}/{archive}.tar.gz",
        "archive_checksum": f"sha256:{{{{ lab_vllm_models_url }}}}/{archive}.tar.gz.sha256",
    }


def vllm_vars() -> dict:
    return {
        "vllm_device": "cpu",
        "vllm_package": VLLM_PACKAGE,
        "vllm_version": VLLM_VERSION,
        "vllm_pip_no_index": True,
        "vllm_pip_find_links": ["{{ lab_artifact_url }}/wheels/index.html"],
        "vllm_pip_requirements": "{{ lab_artifact_url }}/wheels/requirements.txt",
        "vllm_pip_trusted_hosts": ["{{ lab_artifact_url | urlsplit('hostname') }}"],
        "vllm_models_dir": "{{ lab_disk_path }}/vllm/models",
        "vllm_archive_dir": "{{ lab_disk_path }}/vllm/archives",
        "vllm_kv_cache_memory_bytes": "64M",
        "vllm_max_model_len": 1024,
        "vllm_enforce_eager": True,
        "vllm_extra_args": ["--max-num-seqs", "8"],
        "vllm_api_key": LAB_API_KEY,
        "vllm_models": [lab_model("assistant", "tiny-chat-v1")],
        "lab_vllm_models_url": "{{ lab_artifact_url }}/models",
    }
