"""The loss curves of bench/torch_parity.py: both sides per case, and their relative difference."""

import numpy as np


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for i, r in enumerate(results):
        color = f"C{i % 10}"
        steps = np.arange(1, len(r["rel"]) + 1)
        top.plot(steps, r["torch"].losses, "-", color=color, label=f"{r['case']} torch")
        top.plot(steps, r["ours"].losses, "o", color=color, markersize=3, label="ours")
        bottom.semilogy(steps, np.maximum(r["rel"], 1e-9), ".-", color=color, label=str(r["case"]))
    losses = np.concatenate([r["torch"].losses for r in results]).astype(np.float32)
    ulp = float(np.median(np.spacing(losses) / losses))
    bottom.axhline(ulp, color="grey", linestyle="--", label="1 float32 ulp of the loss")
    top.set_ylabel("training loss (line: torch, dots: ours)")
    bottom.set_ylabel("|ours - torch| / torch (0 drawn at 1e-9)")
    bottom.set_xlabel("optimiser step")
    bottom.legend(fontsize=7, ncol=2)
    top.set_title("loss per step: transformers.Trainer + PEFT vs icma-jax")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")
