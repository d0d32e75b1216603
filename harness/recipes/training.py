"""Training helpers shared by the zoo (initial training) and the transform recipes.

Everything is deterministic from a seed: the global RNG is forked (so training inside
a recipe does not shift the caller's random stream), batches are drawn from a seeded
``torch.Generator`` over in-memory numpy arrays (no DataLoader workers), and every run
uses the same cosine learning-rate schedule. Two CPU cores are the norm here, so the
loops avoid anything that only pays off at scale.

Must not import :mod:`harness.recipes.base` at module level: the zoo imports this module
lazily while ``harness.models`` may still be initialising.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.models.inputs import Batch, batch_arrays, call_module, example_args, to_tensors

__all__ = [
    "class_logits",
    "derive_bundle",
    "distillation_loss",
    "evaluate_accuracy",
    "finetune",
    "predict_logits",
    "quality",
    "top1_agreement",
    "torch_threads",
    "train_classifier",
    "training_threads",
]


def class_logits(
    logits: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits as ``(positions, classes)`` and labels as ``(positions,)``: the class axis
    is the last one, so a classifier's ``(N, C)`` stays as it is and a tagger's
    ``(N, T, C)`` with labels ``(N, T)`` becomes ``N * T`` positions."""
    flat = logits.reshape(-1, logits.shape[-1])
    return flat, None if labels is None else labels.reshape(-1)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)`` (Hinton).

    The ``T^2`` factor keeps the soft-target gradients at the same scale as the hard ones
    whatever the temperature, so ``alpha`` means the same thing at every ``T``.
    ``labels`` may be None only when ``alpha == 0`` (pure output matching). The class
    axis is the last one (see :func:`class_logits`).
    """
    student_logits, labels = class_logits(student_logits, labels)
    teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    t = temperature
    kd = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
    ) * (t * t)
    if alpha <= 0:
        return kd
    if labels is None:
        raise ValueError("distillation_loss: alpha > 0 needs hard labels")
    ce = F.cross_entropy(student_logits, labels)
    return alpha * ce + (1.0 - alpha) * kd


def predict_logits(
    module: nn.Module,
    inputs: Batch | torch.Tensor | tuple[torch.Tensor, ...],
    batch_size: int = 256,
) -> torch.Tensor:
    """Eval-mode (first) outputs for every input, batched so large inputs do not spike
    memory. ``inputs`` is a batch (one array or tensor per model input; integer ids keep
    their dtype). The module's train/eval mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    x = to_tensors(inputs)
    outs = []
    with torch.no_grad():
        for start in range(0, len(x[0]), batch_size):
            outs.append(call_module(module, [t[start : start + batch_size] for t in x]))
    module.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate_accuracy(
    module: nn.Module, inputs: Batch | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> float:
    """Top-1 accuracy in [0, 1] on the given (held-out) inputs, over every position for
    outputs with a sequence axis (class axis last)."""
    logits = predict_logits(module, inputs)
    y = torch.as_tensor(labels, dtype=torch.int64)
    return float((logits.argmax(-1) == y).float().mean().item())


def top1_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of inputs (positions) where two models pick the same class: one quality
    measure for models without labels (agreement with the fp32 reference)."""
    return float((a.argmax(-1) == b.argmax(-1)).float().mean().item())


def train_classifier(
    module: nn.Module,
    inputs: Batch,
    labels: np.ndarray | None = None,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    batch_size: int = 64,
    optimizer: Literal["adam", "sgd"] = "adam",
    weight_decay: float = 0.0,
    soft_targets: np.ndarray | torch.Tensor | None = None,
    alpha: float = 1.0,
    temperature: float = 1.0,
    after_step: Callable[[], None] | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train ``module`` in place and return it in eval mode.

    Without ``soft_targets`` the loss is cross-entropy on ``labels``. With them (the
    teacher's logits for the same inputs, computed once up front so the teacher is not
    re-run every epoch) the loss is :func:`distillation_loss`; ``alpha=0`` matches the
    teacher's outputs only and needs no labels. ``after_step`` runs after every optimizer
    step (unstructured pruning uses it to keep pruned weights at exactly zero).

    ``threads`` sets torch's intra-op threads for the loop (restored afterwards); None
    picks :func:`training_threads`.
    """
    if soft_targets is None and labels is None:
        raise ValueError("train_classifier needs labels or soft_targets")
    if epochs <= 0 or len(batch_arrays(inputs)[0]) == 0:
        return module.eval()
    x = to_tensors(inputs)
    y = torch.as_tensor(labels, dtype=torch.int64) if labels is not None else None
    soft = torch.as_tensor(soft_targets, dtype=torch.float32) if soft_targets is not None else None
    n = len(x[0])
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    if threads is None:
        threads = training_threads(module, tuple(t[:1] for t in x))
    channels_last = _trains_faster_channels_last(module, x)
    if channels_last:
        module.to(memory_format=torch.channels_last)
        x = [t.contiguous(memory_format=torch.channels_last) for t in x]
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        params = [p for p in module.parameters() if p.requires_grad]
        if optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
            )
        else:
            opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
        module.train()
        t0 = time.perf_counter()
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=gen)
            running = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                if len(idx) < 2 and _has_batchnorm(module):
                    continue  # BatchNorm cannot train on a single sample
                out = call_module(module, [t[idx] for t in x])
                if soft is None:
                    loss = F.cross_entropy(*class_logits(out, y[idx]))  # type: ignore[arg-type,index]
                else:
                    loss = distillation_loss(
                        out, soft[idx], y[idx] if y is not None else None, alpha, temperature
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if after_step is not None:
                    with torch.no_grad():
                        after_step()
                running += float(loss.item()) * len(idx)
            if log is not None:
                log(
                    f"  epoch {epoch + 1}/{epochs} loss {running / n:.4f} "
                    f"({time.perf_counter() - t0:.1f}s)"
                )
    if channels_last:
        module.to(memory_format=torch.contiguous_format)  # exporters expect the default
    return module.eval()


def _trains_faster_channels_last(module: nn.Module, inputs: list[torch.Tensor]) -> bool:
    """Whether to train a conv net in channels-last layout: oneDNN's NHWC kernels train
    mobilenet_v2 (width 0.5, 96 px) 1.5x faster here (6.9 -> 4.5 s an epoch, 2 threads).

    Only plain modules on float image batches: an exported graph (QAT) keeps its layout.
    """
    if isinstance(module, torch.fx.GraphModule):
        return False
    if not all(t.dim() == 4 and t.is_floating_point() for t in inputs):
        return False
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


# Below this many multiply-accumulates per sample a training step is a long chain of
# tiny ops, and a second intra-op thread only adds synchronisation. Measured on the
# 2-core box, quiet: mobilenet_v2 (width 0.5, 96 px, 17.6 M MACs) trained an epoch of
# the digits in 12.5 s on one thread and 6.9 s on two; digits-cnn (~1 M MACs) stays on one.
SMALL_MODEL_MACS = 10_000_000


def training_threads(module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """1 thread for small models, torch's current setting for large ones.

    Measured on the 2-core box while other processes ran: digits-cnn trained in 2-3 s
    with one thread and 28 s with two (OpenMP threads spin-waiting on each other when a
    core is taken). Models of :data:`SMALL_MODEL_MACS` and more keep the default: they
    have enough work per op to use more cores.
    """
    from harness.models.architectures import count_macs

    try:
        macs = count_macs(module, example)
    except Exception:  # counting is best effort; never fail training over it
        return torch.get_num_threads()
    return 1 if macs < SMALL_MODEL_MACS else torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (process-wide), then restore it."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def finetune(
    module: nn.Module,
    data: Any,
    teacher: nn.Module | None,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Recover accuracy after a transform; returns what was done for the lineage notes.

    ``data`` is a :class:`harness.models.base.TaskData`. With a train set it trains on the
    hard labels. Without one (random-weight resnet18/mobilenet_v2) it falls back to
    self-distillation: matching ``teacher``'s (the untransformed model's) outputs on the
    calibration inputs, ``alpha=0``, so fine-tuning still means something.
    """
    if epochs <= 0:
        return {"finetune": "none"}
    if data.train_inputs is not None and data.train_labels is not None:
        train_classifier(
            module,
            data.train_inputs,
            data.train_labels,
            epochs=epochs,
            lr=lr,
            seed=seed,
            after_step=after_step,
            log=log,
        )
        return {"finetune": "hard labels (train split)"}
    if teacher is None:
        raise ValueError("finetune without labels needs the original model as teacher")
    soft = predict_logits(teacher, data.calib_inputs)
    train_classifier(
        module,
        data.calib_inputs,
        None,
        epochs=epochs,
        lr=lr,
        seed=seed,
        soft_targets=soft,
        alpha=0.0,
        temperature=1.0,
        after_step=after_step,
        log=log,
    )
    return {"finetune": "self-distillation on calibration inputs (no labels)"}


def quality(
    module: nn.Module, data: Any, reference_logits: torch.Tensor | None = None
) -> dict[str, float]:
    """How good a (transformed) module is, for the lineage notes.

    With labels: held-out accuracy. Without: top-1 agreement with the original model's
    logits on the eval inputs (the only quality measure a random-weight model has).
    """
    if data.eval_labels is not None:
        return {"accuracy": round(evaluate_accuracy(module, data.eval_inputs, data.eval_labels), 6)}
    if reference_logits is None:
        return {}
    agreement = top1_agreement(predict_logits(module, data.eval_inputs), reference_logits)
    return {"agreement": round(agreement, 6)}


# Facts about the parent that a transform invalidates: where its weights came from, and
# what an earlier recipe measured on it (sparsity, which student it is).
_PARENT_ONLY_INFO = ("weights", "train_seconds", "sparsity", "nonzero_params", "student")


def derive_bundle(bundle: Any, module: nn.Module, **info: Any) -> Any:
    """A new :class:`~harness.models.base.ModelBundle` around ``module``.

    ``info`` starts from the input's, with params_count/macs recounted and accuracy
    re-measured (when there are labels), so a later recipe or report never shows the
    parent's numbers for a child. The data arrays are shared (recipes never write them);
    identity and example input are copied.
    """
    import copy
    import dataclasses

    from harness.models.architectures import model_stats

    module = module.float().eval()
    new_info = {k: v for k, v in bundle.info.items() if k not in _PARENT_ONLY_INFO}
    new_info.update(model_stats(module, bundle.example_input))
    if bundle.data.eval_labels is not None:
        new_info["accuracy"] = round(
            evaluate_accuracy(module, bundle.data.eval_inputs, bundle.data.eval_labels), 6
        )
    new_info.update(info)
    return dataclasses.replace(
        bundle,
        module=module,
        example_input=_cloned(bundle.example_input),
        identity=copy.deepcopy(bundle.identity),
        info=new_info,
    )


def _cloned(example: Any) -> Any:
    args = tuple(a.clone() for a in example_args(example))
    return args if isinstance(example, tuple) else args[0]


def finetune_with_quality(
    module: nn.Module,
    original: nn.Module,
    data: Any,
    reference_logits: torch.Tensor | None,
    *,
    stage: str,
    recipe: str,
    epochs: int,
    lr: float,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``module`` (in place) after a transform, recording its quality at three
    points for the lineage: the original (``*_before``), right after the transform
    (``*_<stage>``) and after fine-tuning (``*_after``), so the cost of the transform and
    what fine-tuning recovered are both visible."""
    notes = {f"{k}_before": v for k, v in quality(original, data, reference_logits).items()}
    notes.update({f"{k}_{stage}": v for k, v in quality(module, data, reference_logits).items()})
    progress = log if epochs > 0 else None
    if progress is not None:
        progress(f"{recipe}: fine-tuning {epochs} epochs")
    notes.update(finetune(module, data, original, epochs=epochs, lr=lr, seed=seed, log=progress))
    notes["finetune_epochs"] = epochs
    notes.update({f"{k}_after": v for k, v in quality(module, data, reference_logits).items()})
    return notes
