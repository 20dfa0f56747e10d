"""Typed run configuration: frozen dataclasses, every key declared once with its default.

Configs are written as `ml_collections.ConfigDict` files (`configs/*.py`) and converted here with
`from_config_dict`; a key the dataclasses do not declare is an error naming its dotted path (and the
nearest declared key), and each dataclass validates its values in `__post_init__`. `None` means "not
set" (all rows, the default folder, the paper's value); no `0` or `""` stands in for it.
`default_config_dict()` is the ConfigDict skeleton the config files start from, so defaults live only
in this module; `parse_arg` reads the `:key=value,...` argument of a config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import pathlib
import types
import typing
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

TASKS = ("mol2cap", "cap2mol")
DATASETS = ("chebi20", "pubchem324k-iupac", "pubchem324k-molcap")
SPLITS = ("train", "validation", "test")
RETRIEVAL_METHODS = ("auto", "bm25", "gnn", "morgan", "pathfp", "random", "files")
RENAMED_METHODS = {"graph": "gnn", "rdkit_path": "pathfp"}  # older spellings, refused by name
SELECTIONS = ("top", "random_walk", "bucket")
TRUNCATIONS, DECODINGS = ("drop_examples", "right"), ("sample", "greedy")
FINETUNES, ATTENTIONS = ("full", "lora"), ("chunked", "xla", "cudnn", "pallas")  # attention: models/attention.py
LOSS_NORMALIZATIONS, DTYPES = ("token_mean", "micro_mean"), ("float32", "bfloat16", "float16")  # loss: step.py


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"config field {name}={value!r} must be one of {allowed}")


def _at_least(name: str, value: float | None, low: float, unset: str = "") -> None:
    """`value >= low`; `unset` (what None means) marks an optional field and is named in the message."""
    if not (value is None and unset) and value < low:
        raise ValueError(f"config field {name}={value!r} must be >= {low}" + (f" or None ({unset})" if unset else ""))


def _set_or_none(name: str, value: str | None, unset: str) -> None:
    if value is not None and not value:
        raise ValueError(f"config field {name} must not be empty: None means {unset}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, task and splits; row slices keep CPU runs small."""

    dataset: str = "chebi20"  # chebi20 | pubchem324k-iupac | pubchem324k-molcap
    data_dir: str | None = None  # None = $ICMA_DATA_DIR, then ~/.cache/icma_jax (see icma_jax.data.sources)
    task: str = "mol2cap"  # mol2cap (molecule -> caption) | cap2mol (caption -> molecule)
    database_split: str = "train"  # retrieval database; the paper uses the training split
    train_split: str = "train"  # fine-tuning queries (self-excluded from their own neighbours)
    test_split: str = "test"  # evaluation queries
    valid_split: str = "validation"  # periodic evaluation (train.eval_every) on its first train.eval_subset rows
    train_start: int = 0  # first row of train_split used for fine-tuning
    train_limit: int | None = None  # rows of train_split used (None = all)
    database_limit: int | None = None  # rows of database_split used (None = all)
    test_start: int = 0  # first row of test_split evaluated
    test_limit: int | None = None  # rows of test_split evaluated (None = all)
    strict: bool = False  # True: a malformed data row is an error instead of a counted skip

    def __post_init__(self):
        _one_of("data.dataset", self.dataset, DATASETS)
        _one_of("data.task", self.task, TASKS)
        _set_or_none("data.data_dir", self.data_dir, "$ICMA_DATA_DIR, then ~/.cache/icma_jax")
        for name in ("database_split", "train_split", "test_split", "valid_split"):
            _one_of(f"data.{name}", getattr(self, name), SPLITS)
        for name in ("train_start", "test_start"):
            _at_least(f"data.{name}", getattr(self, name), 0)
        for name in ("train_limit", "database_limit", "test_limit"):
            _at_least(f"data.{name}", getattr(self, name), 1, unset="all rows")


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """How context examples are found (ICMA_SPEC §2)."""

    method: str = "auto"  # auto: bm25 (cap2mol), gnn with encoder_path else morgan (mol2cap); files: neighbours_dir
    num_candidates: int = 10  # neighbours kept per query, best first
    neighbours_dir: str | None = None  # folder of neighbour files (method=files); written to DIR/neighbours otherwise
    encoder_path: str | None = None  # GIN for method=gnn: a `train-encoder` folder or a Mole-BERT state_dict

    def __post_init__(self):
        if self.method in RENAMED_METHODS:
            raise ValueError(f"config field retrieval.method={self.method!r} is now spelled "
                             f"{RENAMED_METHODS[self.method]!r}")
        _one_of("retrieval.method", self.method, RETRIEVAL_METHODS)
        _at_least("retrieval.num_candidates", self.num_candidates, 1)
        _set_or_none("retrieval.neighbours_dir", self.neighbours_dir, "DIR/neighbours")
        _set_or_none("retrieval.encoder_path", self.encoder_path, "no GIN (Morgan for method=auto)")
        if self.method == "files" and self.neighbours_dir is None:
            raise ValueError("config field retrieval.neighbours_dir is required when retrieval.method='files'")


@dataclasses.dataclass(frozen=True)
class SelectionGroup:
    """The `selection.*` keys: which n of the candidates become context (ICMA_SPEC §3); the run turns
    them into `icma_jax.retrieval.SelectionConfig`."""

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
    path: str | None = None  # local checkpoint folder/file (None = the model's default source)
    finetune: str = "full"  # full | lora
    lora_rank: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.1
    param_dtype: str = "float32"  # dtype of the frozen base weights
    compute_dtype: str = "float32"  # activations and matmuls (the model's dtype; bfloat16 on accelerators)
    remat: bool = False  # activation checkpointing per layer
    attention: str = "chunked"  # training attention: chunked (CPU) | xla | cudnn | pallas (GPU/TPU flash kernels)

    def __post_init__(self):
        if not self.name:
            raise ValueError("config field model.name must not be empty")
        _set_or_none("model.path", self.path, "the model's default source")
        _one_of("model.finetune", self.finetune, FINETUNES)
        for key, allowed in (("param_dtype", DTYPES), ("compute_dtype", DTYPES), ("attention", ATTENTIONS)):
            _one_of(f"model.{key}", getattr(self, key), allowed)
        _at_least("model.lora_rank", self.lora_rank, 1)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"config field model.lora_dropout={self.lora_dropout!r} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation (HF Trainer semantics, ICMA_SPEC §5), checkpoints and periodic evaluation."""

    seed: int = 42
    lr: float = 2e-4
    warmup_steps: int = 1000
    epochs: int = 10
    max_steps: int | None = None  # None = epochs × batches per epoch
    batch_size: int = 32  # global effective batch (sequences per optimiser step)
    grad_accum: int = 1  # micro-batches per step (batch_size must divide evenly)
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    loss_normalization: str = "token_mean"  # token_mean: NLL over the label tokens of the whole step (transformers
    # >= 4.46); micro_mean: the mean of each micro-batch's own token mean (transformers <= 4.45, the original's)
    buckets: tuple[int, ...] = (256, 512, 1024, 2048)  # padded lengths; the last must be >= cutoff_len
    pack_length: int | None = None  # set: sequences packed into rows of this many tokens (batch_size counts rows)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int | None = None  # None = evaluate (the test split) only after training
    eval_subset: int = 64  # rows of data.valid_split generated every eval_every steps
    export_adapter: bool = True  # LoRA runs: the adapter as a PEFT directory in DIR/export at the end

    def __post_init__(self):
        _at_least("train.lr", self.lr, 0.0)
        _one_of("train.loss_normalization", self.loss_normalization, LOSS_NORMALIZATIONS)
        for name in ("warmup_steps", "epochs", "eval_subset"):
            _at_least(f"train.{name}", getattr(self, name), 0)
        _at_least("train.max_steps", self.max_steps, 1, unset="epochs × batches per epoch")
        _at_least("train.pack_length", self.pack_length, 1, unset="no packing")
        _at_least("train.eval_every", self.eval_every, 1, unset="no periodic evaluation")
        for name in ("batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints"):
            _at_least(f"train.{name}", getattr(self, name), 1)
        if self.batch_size % self.grad_accum:
            raise ValueError(f"config field train.batch_size={self.batch_size} is not divisible by "
                             f"train.grad_accum={self.grad_accum}")
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)) or self.buckets[0] < 1:
            raise ValueError(f"config field train.buckets={self.buckets!r} must be positive and strictly increasing")
        if self.epochs == 0 and self.max_steps is None:
            raise ValueError("config fields train.epochs=0 and train.max_steps=None: nothing to train")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Generation for the test split and the metric suite (ICMA_SPEC §6-7)."""

    decoding: str = "sample"  # sample (the paper's settings) | greedy
    temperature: float = 0.7
    top_p: float = 0.85
    top_k: int = 40
    repetition_penalty: float | None = None  # None = the paper's per-task value (0.8 Cap2Mol, 1.0 Mol2Cap)
    max_new_tokens: int | None = None  # None: derived from the training answers (eval.baselines.token_budget)
    batch_size: int = 8
    metric_tokenizer: str = "scibert"  # Mol2Cap tokens: scibert (MolT5's script) or a vocab.txt / HF tokenizer
    # folder (e.g. MolT5's T5 tokenizer, ICMA's own protocol)
    zero_shot_baseline: bool = False  # also evaluate the untuned model with the zero-shot prompt
    in_context_baseline: bool = False  # also evaluate the untuned model with the in-context prompts
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
        if self.repetition_penalty is not None and self.repetition_penalty <= 0.0:
            raise ValueError(f"config field eval.repetition_penalty={self.repetition_penalty!r} must be > 0 or "
                             "None (the paper's per-task value)")
        if self.max_new_tokens is not None:
            _at_least("eval.max_new_tokens", self.max_new_tokens, 1)
        _at_least("eval.batch_size", self.batch_size, 1)

    def penalty_for(self, task: str) -> float:
        """The repetition penalty used for `task` (the paper's value unless set)."""
        if self.repetition_penalty is not None:
            return self.repetition_penalty
        return 0.8 if task == "cap2mol" else 1.0


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh sizes; -1 = all remaining devices. With several processes, a process silent for
    `heartbeat_timeout_s` is declared lost and the others stop naming it."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    heartbeat_timeout_s: int = 100

    def __post_init__(self):
        if self.heartbeat_timeout_s < 1:
            raise ValueError(f"config field mesh.heartbeat_timeout_s must be >= 1, got {self.heartbeat_timeout_s}")
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
    selection: SelectionGroup = SelectionGroup()
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


def _optional(hint: Any) -> Any:
    """`X` for a hint `X | None`, else None."""
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and args[1:] == (type(None),) else None


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """Checks `value` against the declared type, converting only lossless cases (int->float, list->tuple)."""
    inner = _optional(hint)
    if inner is not None:
        return None if value is None else _coerce(path, value, inner)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"config field {path}={value!r} must be a tuple")
        (elem, _) = typing.get_args(hint)
        return tuple(_coerce(f"{path}[{i}]", v, elem) for i, v in enumerate(value))
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ValueError(f"config field {path}={value!r} must be of type {hint.__name__}")
        return value
    raise TypeError(f"unsupported config type {hint} for {path}")


def declared_keys() -> list[str]:
    """Every dotted key the run config declares, e.g. `train.lr`."""
    groups = typing.get_type_hints(Config).items()
    return [f"{group}.{f.name}" for group, cls in groups for f in dataclasses.fields(cls)]


def unknown_key(key: str) -> ValueError:
    """The error for a key the config does not declare, naming the nearest declared key when one is close."""
    known = declared_keys() if "." in key else list(typing.get_type_hints(Config))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (keys are declared in icma_jax/config.py)"
    return ValueError(f"unknown config key {key}{hint}")


def from_config_dict(cfg: Mapping[str, Any] | ml_collections.ConfigDict) -> Config:
    """Converts a (Config)dict into a validated `Config`; unknown keys raise `ValueError` with their path."""
    if isinstance(cfg, ml_collections.ConfigDict):
        cfg = cfg.to_dict()
    groups = typing.get_type_hints(Config)
    for group in sorted(set(cfg) - set(groups)):
        raise unknown_key(group)
    built = {}
    for group, cls in groups.items():
        values = dict(cfg.get(group) or {})
        hints = typing.get_type_hints(cls)
        for key in sorted(set(values) - set(hints)):
            raise unknown_key(f"{group}.{key}")
        built[group] = cls(**{k: _coerce(f"{group}.{k}", v, hints[k]) for k, v in values.items()})
    return Config(**built)


def to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-able dict of `config` (tuples become lists)."""
    return dataclasses.asdict(config)


def default_config_dict() -> ml_collections.ConfigDict:
    """A ConfigDict holding every declared key at its default (a typed placeholder where the default is
    None, so `--config.group.key=value` overrides still parse); config files start from this."""
    out = ml_collections.ConfigDict()
    for group, cls in typing.get_type_hints(Config).items():
        sub, hints = ml_collections.ConfigDict(), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            sub[f.name] = config_dict.placeholder(_optional(hints[f.name])) if f.default is None else f.default
        out[group] = sub
    return out


def _convert(key: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"config argument {key}={text!r} must be a boolean")
        return text.lower() in ("true", "1")
    try:
        return type(default)(text)
    except ValueError as e:
        raise ValueError(f"config argument {key}={text!r} must be of type {type(default).__name__}") from e


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses a config file's `"a=1,b=x"` argument against typed `defaults`; unknown keys and bad values are errors."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"config argument {item!r} must look like key=value")
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown config argument {key!r}; {hint}known: {', '.join(defaults)}")
        out[key] = _convert(key, value, defaults[key])
    return ml_collections.ConfigDict(out)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Runs `get_config(arg)` of `path/to/config.py[:arg]`, as `--config` does."""
    path, _, arg = spec.partition(".py:")
    path = pathlib.Path(path if path.endswith(".py") else path + ".py").resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    spec_obj = importlib.util.spec_from_file_location(f"_icma_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    return module.get_config(arg or None) if arg else module.get_config()
