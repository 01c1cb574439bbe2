"""The evaluation picture: both models' confusion matrices side by side, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def save_confusion_png(path: str | Path, matrices: Mapping[str, np.ndarray],
                       labels: Sequence[str], accuracies: Mapping[str, float], rule: str) -> None:
    """Row-normalised confusion matrices (rows: true group) for each model, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(9 * len(matrices), 8.5),
                             constrained_layout=True)
    axes = np.atleast_1d(axes)
    for axis, (which, matrix) in zip(axes, matrices.items()):
        rows = matrix.sum(axis=1, keepdims=True)
        share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
        image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{which}: test accuracy {accuracies[which]:.3f} ({rule})")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.6, label="share of the true group")
    fig.savefig(path, dpi=80)
    plt.close(fig)
