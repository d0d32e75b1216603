"""Does the emulated device's CPU quota slow a run by the factor asked for?

Runs the real runner (through :class:`harness.devices.emulated.EmulatedDevice`, so the
same cgroup path as a suite) on one core for an ONNX MatMul chain of about 5-20 ms:
uncapped, at a 50% quota and at a 25% quota, alternating the order over ``rounds`` so
drift on the shared machine hits every configuration alike. It prints the median over
rounds of each configuration's p50 and mean, and their ratios to the uncapped run
(target: ~2x and ~4x).

Under a quota the runner samples in blocks of 10 quota periods (each sample the mean of
the inferences in its block, see bench_runner.run_blocks), so the p50 holds the
throttling whatever the inference time: ``--size 16 --layers 1`` is a microsecond model,
which per-inference sampling left at full speed. Uncapped runs are timed per inference.
With ``--periods auto 100000`` it compares the default period with the kernel's 100 ms
one (blocks of 1 s then: each run takes at least 10 s).

    .venv/bin/python benchmarks/emulation_speed_cap.py [--rounds 3] [--seconds 1.0]
        [--periods auto 100000] [--layers 24]

Needs root and writable cgroups (else the fallback runs uncapped and it says so). No
assertions: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.devices.config import EmulatedProfile, EmulationCaps  # noqa: E402
from harness.devices.emulated import EmulatedDevice  # noqa: E402
from harness.runner.job import MeasureSettings, make_job  # noqa: E402


def matmul_chain(path: Path, size: int, layers: int) -> list[int]:
    """An ONNX chain of MatMul + Tanh on a [1, size, size] input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        out = "output" if i == layers - 1 else f"t{i}"
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [out]))
        prev = out
    shape = [1, size, size]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return shape


def device(name: str, speed: float | None, period_us: int | None) -> EmulatedDevice:
    caps = EmulationCaps(cores=1, speed_factor=speed, period_us=period_us)
    return EmulatedDevice(EmulatedProfile(name=name, emulation=caps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="min_seconds per run")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--periods", nargs="+", default=["auto"], help="auto or microseconds")
    args = parser.parse_args(argv)

    periods = [None if p == "auto" else int(p) for p in args.periods]
    configs: list[tuple[str, EmulatedDevice]] = [("uncapped", device("uncapped", None, None))]
    for period in periods:
        label = "auto" if period is None else f"{period} us"
        for speed in (0.5, 0.25):
            name = f"{speed:.0%} quota, period {label}"
            configs.append((name, device(f"q{int(speed * 100)}-{period}", speed, period)))

    settings = MeasureSettings(
        warmup_count=5, warmup_seconds=0.2, min_count=50, min_seconds=args.seconds
    )
    p50s: dict[str, list[float]] = {name: [] for name, _ in configs}
    means: dict[str, list[float]] = {name: [] for name, _ in configs}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "chain.onnx"
        shape = matmul_chain(artifact, args.size, args.layers)
        job = make_job("onnxruntime", str(artifact), shape, settings)
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for name, dev in order:
                result = dev.run(job, artifact, None, 600).result
                samples = result["samples_ms"]
                p50s[name].append(statistics.median(samples))
                means[name].append(statistics.fmean(samples))
                emu = result["emulation"]
                notes[name] = f"{emu['method']}; speed: {emu['speed'] or 'not capped'}"
                notes[name] += f"; estimate: {emu['estimate']['how']}"
                if result.get("validity") != "ok":
                    notes[name] += f"; validity: {result['validity']}"
                for line in emu["not_enforced"] + emu["warnings"]:
                    notes[name] += f"; {line}"
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    base_p50 = statistics.median(p50s["uncapped"])
    base_mean = statistics.median(means["uncapped"])
    print(f"model: {args.layers} x MatMul {args.size}x{args.size} + Tanh, 1 thread, 1 core")
    print(f"rounds: {args.rounds}, min_seconds per run: {args.seconds}")
    print(f"{'configuration':32} {'p50 ms':>8} {'x p50':>7} {'mean ms':>8} {'x mean':>7}")
    for name, _ in configs:
        p50, mean = statistics.median(p50s[name]), statistics.median(means[name])
        print(f"{name:32} {p50:8.2f} {p50 / base_p50:7.2f} {mean:8.2f} {mean / base_mean:7.2f}")
    print("per-round p50 ratios:")
    for name, _ in configs[1:]:
        ratios = [c / u for c, u in zip(p50s[name], p50s["uncapped"], strict=True)]
        print(f"  {name:30} " + " ".join(f"{x:.2f}" for x in ratios))
    print("how each was held:")
    for name, _ in configs:
        print(f"  {name}: {notes[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
