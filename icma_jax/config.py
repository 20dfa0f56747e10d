"""Typed run configuration: frozen dataclasses, every key declared once with its default.

Configs are written as `ml_collections.ConfigDict` files (`configs/*.py`) and converted here with
`from_config_dict`; a key the dataclasses do not declare is an error naming its dotted path, and each
dataclass validates its values in `__post_init__`. `default_config_dict()` is the ConfigDict skeleton
the config files start from, so defaults live only in this module.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys
import typing
from collections.abc import Mapping
from typing import Any

import ml_collections

TASKS = ("mol2cap", "cap2mol")
DATASETS = ("chebi20", "pubchem324k-iupac", "pubchem324k-molcap")
SPLITS = ("train", "validation", "test")
RETRIEVAL_METHODS = ("auto", "bm25", "graph", "morgan", "rdkit_path", "random", "files")
SELECTIONS = ("top", "random_walk", "bucket")
TRUNCATIONS = ("drop_examples", "right")
FINETUNES = ("full", "lora")
DTYPES = ("float32", "bfloat16", "float16")
DECODINGS = ("sample", "greedy")


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"config field {name}={value!r} must be one of {allowed}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"config field {name}={value!r} must be >= {low}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, task and splits; row slices keep CPU runs small."""

    dataset: str = "chebi20"  # chebi20 | pubchem324k-iupac | pubchem324k-molcap
    data_dir: str = ""  # "" = $ICMA_DATA_DIR, then ~/.cache/icma_jax (see icma_jax.data.sources)
    task: str = "mol2cap"  # mol2cap (molecule -> caption) | cap2mol (caption -> molecule)
    database_split: str = "train"  # retrieval database; the paper uses the training split
    train_split: str = "train"  # fine-tuning queries (self-excluded from their own neighbours)
    test_split: str = "test"  # evaluation queries
    valid_split: str = "validation"  # periodic evaluation (train.eval_every) on its first train.eval_subset rows
    train_start: int = 0  # first row of train_split used for fine-tuning
    train_limit: int = 0  # rows of train_split used (0 = all)
    database_limit: int = 0  # rows of database_split used (0 = all)
    test_start: int = 0  # first row of test_split evaluated
    test_limit: int = 0  # rows of test_split evaluated (0 = all)
    strict: bool = False  # True: a malformed data row is an error instead of a counted skip

    def __post_init__(self):
        _one_of("data.dataset", self.dataset, DATASETS)
        _one_of("data.task", self.task, TASKS)
        for name in ("database_split", "train_split", "test_split", "valid_split"):
            _one_of(f"data.{name}", getattr(self, name), SPLITS)
        for name in ("train_start", "train_limit", "database_limit", "test_start", "test_limit"):
            _at_least(f"data.{name}", getattr(self, name), 0)


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """How context examples are found (ICMA_SPEC §2)."""

    method: str = "auto"  # auto = bm25 for cap2mol, graph for mol2cap; files = read neighbours_dir
    num_candidates: int = 10  # neighbours kept per query, best first
    neighbours_dir: str = ""  # folder of neighbour files (method=files); written to DIR/neighbours otherwise
    encoder_path: str = ""  # Mole-BERT / Hu et al. GIN state_dict for method=graph

    def __post_init__(self):
        _one_of("retrieval.method", self.method, RETRIEVAL_METHODS)
        _at_least("retrieval.num_candidates", self.num_candidates, 1)
        if self.method == "files" and not self.neighbours_dir:
            raise ValueError("config field retrieval.neighbours_dir is required when retrieval.method='files'")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """Post-retrieval re-ranking: which n of the candidates become context (ICMA_SPEC §3)."""

    n_examples: int = 2  # context examples per prompt
    strategy: str = "top"  # top | random_walk | bucket
    p_skip: float = 0.0  # Random Walk skip probability (the paper: 0.05 for Mol2Cap)
    offset: int = 0  # ranks skipped before selecting
    reverse: bool = True  # Sequence Reversal: most similar example right before the query
    resample_each_epoch: bool = False  # redraw random selections every epoch (the original: fixed once)

    def __post_init__(self):
        _at_least("selection.n_examples", self.n_examples, 0)
        _one_of("selection.strategy", self.strategy, SELECTIONS)
        if not 0.0 <= self.p_skip < 1.0:
            raise ValueError(f"config field selection.p_skip={self.p_skip!r} must be in [0, 1)")
        _at_least("selection.offset", self.offset, 0)


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """Prompt assembly and tokenisation (ICMA_SPEC §4)."""

    zero_shot: bool = False  # True: the zero-shot baseline templates, no context examples
    cutoff_len: int = 2048  # tokens per training sequence
    truncation: str = "drop_examples"  # drop_examples (least similar first) | right (the original)
    train_on_inputs: bool = False  # True: loss on the whole text, not only the answer

    def __post_init__(self):
        _at_least("prompt.cutoff_len", self.cutoff_len, 8)
        _one_of("prompt.truncation", self.truncation, TRUNCATIONS)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The backbone and what is trained."""

    name: str = "galactica-125m"  # a name known to icma_jax.models (e.g. galactica-125m, mistral-7b, tiny)
    path: str = ""  # local checkpoint folder/file ("" = the model's default local source)
    finetune: str = "full"  # full | lora
    lora_rank: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.1
    param_dtype: str = "float32"  # dtype of the frozen base weights
    compute_dtype: str = "float32"  # activations / matmuls (bfloat16 on accelerators)
    remat: bool = False  # activation checkpointing per layer

    def __post_init__(self):
        if not self.name:
            raise ValueError("config field model.name must not be empty")
        _one_of("model.finetune", self.finetune, FINETUNES)
        _one_of("model.param_dtype", self.param_dtype, DTYPES)
        _one_of("model.compute_dtype", self.compute_dtype, DTYPES)
        _at_least("model.lora_rank", self.lora_rank, 1)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"config field model.lora_dropout={self.lora_dropout!r} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation (HF Trainer semantics, ICMA_SPEC §5), checkpoints and logging."""

    seed: int = 42
    lr: float = 2e-4
    warmup_steps: int = 1000
    epochs: int = 10
    max_steps: int = 0  # 0 = epochs × batches per epoch
    batch_size: int = 32  # global effective batch (sequences per optimiser step)
    grad_accum: int = 1  # micro-batches per step (batch_size must divide evenly)
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    buckets: tuple[int, ...] = (256, 512, 1024, 2048)  # padded lengths; the last must be >= cutoff_len
    pack_length: int = 0  # > 0: pack several sequences into rows of this many tokens (batch_size then counts
    # rows, sequences per step vary; no padding is computed); 0: one sequence per row, the original's batching
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0 = evaluate (the test split) only after training
    eval_subset: int = 64  # rows of data.valid_split generated every eval_every steps

    def __post_init__(self):
        _at_least("train.lr", self.lr, 0.0)
        for name in ("warmup_steps", "epochs", "max_steps", "eval_every", "eval_subset", "pack_length"):
            _at_least(f"train.{name}", getattr(self, name), 0)
        for name in ("batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_checkpoints"):
            _at_least(f"train.{name}", getattr(self, name), 1)
        if self.batch_size % self.grad_accum:
            raise ValueError(f"config field train.batch_size={self.batch_size} is not divisible by "
                             f"train.grad_accum={self.grad_accum}")
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)) or self.buckets[0] < 1:
            raise ValueError(f"config field train.buckets={self.buckets!r} must be positive and strictly increasing")
        if self.epochs == 0 and self.max_steps == 0:
            raise ValueError("config fields train.epochs and train.max_steps are both 0: nothing to train")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Generation for the test split and the metric suite (ICMA_SPEC §6-7)."""

    decoding: str = "sample"  # sample (the paper's settings) | greedy
    temperature: float = 0.7
    top_p: float = 0.85
    top_k: int = 40
    repetition_penalty: float = 0.0  # 0 = the paper's per-task value (0.8 Cap2Mol, 1.0 Mol2Cap)
    max_new_tokens: int = 256
    batch_size: int = 8
    metric_tokenizer: str = "scibert"  # Mol2Cap tokens: scibert (MolT5's script) or a vocab.txt / HF tokenizer
    # folder (e.g. MolT5's T5 tokenizer, ICMA's own protocol)
    zero_shot_baseline: bool = False  # also evaluate the untuned model with the zero-shot prompt
    answer_rule: str = "first_line"  # first_line: first line after the first marker | last_marker: the original
    skip: bool = False  # True: train only

    def __post_init__(self):
        _one_of("eval.decoding", self.decoding, DECODINGS)
        _one_of("eval.answer_rule", self.answer_rule, ("first_line", "last_marker"))
        if not self.metric_tokenizer:
            raise ValueError("config field eval.metric_tokenizer must not be empty (default: 'scibert')")
        _at_least("eval.temperature", self.temperature, 0.0)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"config field eval.top_p={self.top_p!r} must be in (0, 1]")
        _at_least("eval.top_k", self.top_k, 0)
        _at_least("eval.repetition_penalty", self.repetition_penalty, 0.0)
        _at_least("eval.max_new_tokens", self.max_new_tokens, 1)
        _at_least("eval.batch_size", self.batch_size, 1)

    def penalty_for(self, task: str) -> float:
        """The repetition penalty used for `task` (the paper's value unless set)."""
        if self.repetition_penalty:
            return self.repetition_penalty
        return 0.8 if task == "cap2mol" else 1.0


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh sizes; -1 = all remaining devices."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self):
        sizes = (self.data, self.fsdp, self.tensor)
        if sum(s == -1 for s in sizes) > 1:
            raise ValueError(f"config field mesh: at most one axis may be -1, got {sizes}")
        if any(s == 0 or s < -1 for s in sizes):
            raise ValueError(f"config field mesh: sizes must be positive or -1, got {sizes}")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run."""

    data: DataConfig = DataConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    selection: SelectionConfig = SelectionConfig()
    prompt: PromptConfig = PromptConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    mesh: MeshConfig = MeshConfig()

    def __post_init__(self):
        if self.train.buckets[-1] < self.prompt.cutoff_len:
            raise ValueError(f"config field train.buckets={self.train.buckets!r}: the last bucket must be >= "
                             f"prompt.cutoff_len={self.prompt.cutoff_len}")
        if self.prompt.zero_shot and self.selection.n_examples:
            raise ValueError("config fields prompt.zero_shot=True and selection.n_examples>0 contradict each other")


def _group_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """Checks `value` against the declared type, converting only lossless cases (int->float, list->tuple)."""
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"config field {path}={value!r} must be a tuple")
        (elem, _) = typing.get_args(hint)
        return tuple(_coerce(f"{path}[{i}]", v, elem) for i, v in enumerate(value))
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ValueError(f"config field {path}={value!r} must be of type {hint.__name__}")
        return value
    raise TypeError(f"unsupported config type {hint} for {path}")


def from_config_dict(cfg: Mapping[str, Any] | ml_collections.ConfigDict) -> Config:
    """Converts a (Config)dict into a validated `Config`; unknown keys raise `ValueError` with their path."""
    if isinstance(cfg, ml_collections.ConfigDict):
        cfg = cfg.to_dict()
    groups = _group_types(Config)
    unknown = sorted(set(cfg) - set(groups))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)} (known groups: {', '.join(groups)})")
    built = {}
    for group, cls in groups.items():
        values = dict(cfg.get(group) or {})
        hints = _group_types(cls)
        bad = sorted(set(values) - set(hints))
        if bad:
            raise ValueError(f"unknown config key(s): {', '.join(f'{group}.{k}' for k in bad)}")
        built[group] = cls(**{k: _coerce(f"{group}.{k}", v, hints[k]) for k, v in values.items()})
    return Config(**built)


def to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-able dict of `config` (tuples become lists)."""
    return dataclasses.asdict(config)


def default_config_dict() -> ml_collections.ConfigDict:
    """A ConfigDict holding every declared key at its default; config files start from this."""
    out = ml_collections.ConfigDict()
    for group, cls in _group_types(Config).items():
        sub = ml_collections.ConfigDict()
        for f in dataclasses.fields(cls):
            sub[f.name] = f.default
        out[group] = sub
    return out


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Runs `get_config(arg)` of `path/to/config.py[:arg]` (as `--config` does), `from configs import common` working."""
    path, _, arg = spec.partition(".py:")
    path = pathlib.Path(path if path.endswith(".py") else path + ".py").resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    root = str(path.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    spec_obj = importlib.util.spec_from_file_location(f"_icma_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    return module.get_config(arg or None) if arg else module.get_config()
