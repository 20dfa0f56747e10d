"""The PyTorch side of bench/torch_parity.py: the original's recipe run by the real `transformers.Trainer`.

`DataCollatorForSeq2Seq(pad_to_multiple_of=8)` pads each micro-batch on the left (labels with -100); LoRA is
`peft.get_peft_model` on every linear layer but lm_head; `optim="adamw_torch"`, `lr_scheduler_type="linear"`
with warm-up, `max_grad_norm`, gradient accumulation. Only the sampler is replaced (sequential), so micro-batch
j holds sequences j*m .. j*m+m-1. The per-step loss, lr and gradient norm are the Trainer's own log
(`logging_steps=1`). `micro_mean` reproduces transformers <= 4.45 (the original's 4.36): with
`model_accepts_loss_kwargs = False` the Trainer passes no `num_items_in_batch`, the model returns each
micro-batch's mean and `training_step` divides it by the accumulation steps.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
import torch
import transformers
from torch.utils.data import SequentialSampler

LORA_TARGETS = {
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@dataclasses.dataclass
class RunResult:
    """Per-step loss / lr / gradient norm / seconds and the trained weights (HF or PEFT names -> arrays)."""

    losses: list[float]
    lrs: list[float]
    grad_norms: list[float]
    step_s: list[float]
    weights: dict[str, np.ndarray]


class _SequentialTrainer(transformers.Trainer):
    """The stock Trainer with the training order fixed (no shuffling)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class _StepTimer(transformers.TrainerCallback):
    def __init__(self):
        self.step_s, self._t0 = [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_s.append(time.perf_counter() - self._t0)


def load_reference_model(source: str | pathlib.Path, gguf_file: str | None = None) -> torch.nn.Module:
    """A transformers CausalLM in fp32 from a saved directory (or a GGUF file in it), every dropout rate 0."""
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    config = transformers.AutoConfig.from_pretrained(str(source), **kw)
    for name in ("dropout", "attention_dropout", "activation_dropout", "layerdrop", "hidden_dropout"):
        if hasattr(config, name):  # the layers read these rates when they are built
            setattr(config, name, 0.0)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(source), config=config, dtype=torch.float32, **kw)
    if gguf_file:  # transformers dequantised the GGUF tensors to fp32: train them as the plain model they now are
        model.hf_quantizer, model.is_quantized = None, False
        config.__dict__.pop("quantization_config", None)
    return model


def add_lora(model: torch.nn.Module, family: str, rank: int, alpha: float, seed: int, init_dir: pathlib.Path):
    """PEFT LoRA (dropout 0) with PEFT's own initialisation, saved to `init_dir` for the other side."""
    import peft

    torch.manual_seed(seed)
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS[family],
                          task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, cfg)
    model.save_pretrained(str(init_dir))
    return model


def train_reference(model: torch.nn.Module, features: list[dict], tokenizer, *, steps: int, micro: int, accum: int,
                    lr: float, warmup: int, clip: float, loss_normalization: str, bf16: bool,
                    workdir: pathlib.Path, threads: int) -> RunResult:
    """`steps` optimiser steps of the Trainer over `features` (dicts of input_ids / attention_mask / labels)."""
    torch.set_num_threads(threads)
    args = transformers.TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=micro, gradient_accumulation_steps=accum,
        learning_rate=lr, max_steps=steps, warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=clip, optim="adamw_torch",
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=bf16, seed=42,
        dataloader_num_workers=0, disable_tqdm=True, logging_nan_inf_filter=False)
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8,
                                                   label_pad_token_id=-100, return_tensors="pt")
    timer = _StepTimer()
    trainer = _SequentialTrainer(model=model, args=args, train_dataset=features, data_collator=collator,
                                 callbacks=[timer])
    if loss_normalization == "micro_mean":
        trainer.model_accepts_loss_kwargs = False
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "step" in h and "train_runtime" not in h]
    if len(logs) != steps:
        raise RuntimeError(f"the Trainer logged {len(logs)} of {steps} steps")
    return RunResult(losses=[float(h["loss"]) for h in logs], lrs=[float(h["learning_rate"]) for h in logs],
                     grad_norms=[float(h["grad_norm"]) for h in logs], step_s=timer.step_s,
                     weights=trained_weights(model))


def trained_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The trainable tensors: PEFT adapter names (as saved) for LoRA, the state dict names otherwise."""
    if hasattr(model, "peft_config"):
        import peft

        tensors = peft.get_peft_model_state_dict(model)
    else:
        tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    return {name: t.detach().float().cpu().numpy() for name, t in tensors.items()}
