"""A run's trained weights out of its checkpoint: a PEFT LoRA adapter directory, or a transformers checkpoint.

`restore_run` reads DIR/config.json and restores the checkpoint's trainable tree onto one local device with
the run's own `Checkpointer` (manifest checked, damaged checkpoints set aside), so one process exports a run
trained by any number of processes. Every export carries a short model card (README.md) saying what
`base_model_name_or_path` holds and how PyTorch loads the base.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from icma_jax import config as config_lib
from icma_jax.config import Config
from icma_jax.models import LoraConfig
from icma_jax.models.config import LMConfig
from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.models.lora import init_lora, merge_lora
from icma_jax.models.peft import export_peft
from icma_jax.models.registry import EMBEDDED, HUB_ALIASES, resolve_model
from icma_jax.models.transformer import abstract_variables, build_model
from icma_jax.run import backbone as backbone_lib, context, outputs
from icma_jax.sharding import make_mesh
from icma_jax.training.checkpoint import Checkpointer, abstract_state
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import init_state, state_sharding


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A run's config, architecture, tokenizer and the trainable tree of one checkpoint (on one device)."""

    workdir: pathlib.Path
    config: Config
    step: int
    lm_config: LMConfig
    tokenizer: Any
    lora: LoraConfig | None  # None: full fine-tuning (`trainable` holds every weight)
    trainable: Any
    mesh: Any  # the one-device mesh the tree lives on

    @property
    def source(self) -> str:
        return self.config.model.path or self.config.model.name


def read_run_config(workdir: str | pathlib.Path) -> Config:
    """DIR/config.json as a validated `Config`; a folder without one is a one-line error."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --run takes a run directory written by train.py")
    try:
        return config_lib.from_config_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None


def lora_of(cfg: Config, lm_config: LMConfig) -> LoraConfig | None:
    """The run's adapter shape (None for full fine-tuning), as the run built it."""
    if cfg.model.finetune != "lora":
        return None
    return LoraConfig.for_family(lm_config.family, rank=cfg.model.lora_rank, alpha=cfg.model.lora_alpha,
                                 dropout=cfg.model.lora_dropout)


def restore_run(workdir: str | pathlib.Path, step: int | None = None) -> RestoredRun:
    """The trainable tree of checkpoint `step` (None: the newest that restores) of the run in `workdir`."""
    workdir = pathlib.Path(workdir)
    cfg = read_run_config(workdir)
    source = cfg.model.path or cfg.model.name
    lm_config, tokenizer = backbone_lib.describe(source, cfg.model.compute_dtype, cfg.model.param_dtype)
    lm_config = lm_config.replace(attention=cfg.model.attention)
    lora = lora_of(cfg, lm_config)
    if lora is None:
        abstract = nn.meta.unbox(abstract_variables(build_model(lm_config))["params"])
    else:
        module = build_model(lm_config, lora)
        abstract = jax.eval_shape(lambda k: init_lora(module, lora, k), jax.random.key(0))
    mesh = make_mesh(1, 1, 1, devices=jax.local_devices()[:1])
    sharding = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), abstract)
    # the schedule's length is not part of the optimiser state's structure: any total restores it
    optimizer = make_optimizer(cfg.train.lr, cfg.train.warmup_steps, cfg.train.warmup_steps + 1, cfg.train.b1,
                               cfg.train.b2, cfg.train.eps, cfg.train.weight_decay, cfg.train.clip_norm)
    shapes = jax.eval_shape(lambda t: init_state(t, optimizer), abstract)
    target = abstract_state(shapes, state_sharding(sharding, optimizer, abstract))
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{workdir / 'checkpoints'} not found: the run has no checkpoint yet")
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=None, async_save=False)
    try:
        state, _, _ = ckpt.restore(target, step)
    finally:
        ckpt.close()
    return RestoredRun(workdir, cfg, int(state.step), lm_config, tokenizer, lora, state.trainable, mesh)


def base_reference(source: str) -> tuple[str, str | None, str]:
    """(what `base_model_name_or_path` holds, the GGUF file name or None, a phrase saying what it is)."""
    if source == "tiny":
        return "tiny", None, "the run's random test model (`model.name=tiny`, seeded by `train.seed`): not loadable"
    if source in HUB_ALIASES:
        return HUB_ALIASES[source], None, f"the Hugging Face hub id of `{source}`"
    path = pathlib.Path(source).expanduser()
    if source in EMBEDDED or path.exists():
        found = resolve_model(source)
        where = str(found.directory.resolve())
        if found.kind == "gguf":
            return where, found.gguf_file, f"the folder of the GGUF file `{found.gguf_file}`"
        return where, None, "a local transformers directory"
    return source, None, "a Hugging Face hub id"


def _load_lines(base: str, gguf_file: str | None, model_dir: str, peft_dir: str | None) -> str:
    gguf = f", gguf_file={gguf_file!r}" if gguf_file else ""
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if peft_dir is not None:
        lines += ["from peft import PeftModel", "",
                  f"base = AutoModelForCausalLM.from_pretrained({base!r}{gguf})",
                  f"model = PeftModel.from_pretrained(base, {peft_dir!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({base!r}{gguf})"]
    else:
        lines += ["", f"model = AutoModelForCausalLM.from_pretrained({model_dir!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({model_dir!r})"]
    return "\n".join(lines + ["```"])


def model_card(run: RestoredRun, out: pathlib.Path, kind: str) -> str:
    """README.md of an export: what it is, what `base_model_name_or_path` holds, how PyTorch loads it."""
    cfg = run.config
    base, gguf_file, what = base_reference(run.source)
    head = [f"# {cfg.data.task} on {cfg.data.dataset}: {kind} from icma-jax", "",
            f"Run `{run.workdir.resolve()}`, checkpoint step {run.step}; {cfg.selection.n_examples} context "
            f"example(s) per prompt ({context.resolve_method(cfg)} retrieval, {cfg.selection.strategy} selection).", ""]
    if run.lora is not None:
        head += [f"LoRA r={run.lora.rank}, alpha={run.lora.alpha:g} on {', '.join(run.lora.targets)}.", ""]
    if kind == "PEFT LoRA adapter":
        head += [f"`base_model_name_or_path` in adapter_config.json holds `{base}`: {what}."]
        if gguf_file:
            head += ["transformers reads a GGUF base only when told the file (`gguf_file=`; it needs the `gguf` "
                     "package and dequantizes the weights to float32, as icma-jax does), so load the base first "
                     "(`AutoPeftModelForCausalLM.from_pretrained` on this folder would miss the file):"]
        head += ["", _load_lines(base, gguf_file, "", str(out.resolve()))]
    else:
        head += [f"The weights are the base model ({base}: {what}) with the run's changes folded in; "
                 "a plain transformers checkpoint:", "", _load_lines(base, None, str(out.resolve()), None)]
    flag = "--smiles" if cfg.data.task == "mol2cap" else "--caption"
    head += ["", "Prompts must be built as the run built them (its retrieval, selection and template): "
             f"`icma-jax predict --run {run.workdir.resolve()} {flag} ...` does that.", ""]
    return "\n".join(head)


def host_tree(tree: Any) -> Any:
    """NumPy copy of a tree whose leaves are replicated (every process holds all of each): no collective."""
    def one(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.sharding.is_fully_replicated):
            raise ValueError("host_tree: an array split across processes needs a gather first")
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def write_adapter(run: RestoredRun, out: str | pathlib.Path) -> pathlib.Path:
    """The run's LoRA adapter as a PEFT directory (+ README.md), replacing `out`'s files."""
    if run.lora is None:
        raise ValueError(f"{run.workdir}: model.finetune={run.config.model.finetune!r} has no adapter: use --merged "
                         "for a transformers checkpoint")
    out = pathlib.Path(out)
    base, _, _ = base_reference(run.source)
    export_peft(out, host_tree(run.trainable), run.lora, run.lm_config, base_model_name_or_path=base)
    outputs.write_text(out / "README.md", model_card(run, out, "PEFT LoRA adapter"))
    return out


def write_merged(run: RestoredRun, out: str | pathlib.Path, dtype: str = "float32") -> pathlib.Path:
    """A transformers checkpoint (config.json, model.safetensors, tokenizer, README.md): the base with the
    adapter merged in, or a full fine-tuning run's weights."""
    out = pathlib.Path(out)
    params = run.trainable
    if run.lora is not None:
        key = jax.random.split(jax.random.key(run.config.train.seed))[0]  # the run's init key (the tiny base)
        backbone = backbone_lib.load_backbone(run.source, run.lm_config, run.tokenizer, run.mesh, key, lora=None)
        params = jax.jit(lambda p, a: merge_lora(p, a, run.lora))(backbone.trainable, run.trainable)
    save_hf_checkpoint(out, params, run.lm_config, run.tokenizer, dtype=dtype)
    kind = "merged transformers checkpoint" if run.lora is not None else "fine-tuned transformers checkpoint"
    outputs.write_text(out / "README.md", model_card(run, out, kind))
    return out


def export_run(workdir: str | pathlib.Path, out: str | pathlib.Path, *, step: int | None = None,
               merged: bool = False, dtype: str = "float32") -> pathlib.Path:
    """`icma-jax export --run`: a LoRA run's adapter (PEFT), or with `merged` / for full fine-tuning a
    transformers checkpoint in `dtype`."""
    run = restore_run(workdir, step)
    if merged or run.lora is None:
        return write_merged(run, out, dtype)
    return write_adapter(run, out)
