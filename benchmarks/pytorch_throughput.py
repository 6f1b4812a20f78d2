"""Training throughput of `train_pytorch_model` against a bare PyTorch loop, in the same run.

    python benchmarks/pytorch_throughput.py [--epochs 3] [--images 64] [--size 64] [--model resnet18]

Same model, data, transforms, batch size and optimiser. The flow's figure is its own
`train_images_per_sec` metric (training phase of an epoch, data loading included, validation
excluded); the bare loop times the same phase. Epoch 1 is warm-up and left out; the median of the
rest is printed. Dask starts its worker processes with OMP_NUM_THREADS=1, so the bare loop uses
`--threads` (default 1) torch threads to match. Targets: flow / bare >= 0.97 single process; DDP
scaling efficiency = (2-rank images/s) / (2 x single-process images/s).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bare_loop(train_dir: str, classes: tuple[str, ...], model: str, size: int, batch: int, epochs: int) -> list[float]:
    """Images per second of each epoch of a plain PyTorch training loop."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from prefect_mltrain.pytorch.data import image_folder
    from prefect_mltrain.pytorch.model import build_model

    torch.manual_seed(1)
    data = image_folder(train_dir, classes, size, train=True)
    loader = DataLoader(data, batch_size=batch, sampler=RandomSampler(data, generator=torch.Generator().manual_seed(1)))
    net = build_model(model, len(classes))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    rates = []
    for _ in range(epochs):
        net.train()
        seen, started = 0, time.perf_counter()
        for images, target in loader:
            loss = criterion(net(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(target)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=64, help="training images per class (2 classes)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the bare loop")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of bare / flow / DDP, interleaved")
    args = parser.parse_args()
    from _stack import local_stack

    from tests.pytorch_helpers import make_image_dir

    with local_stack():
        import torch

        from prefect_mltrain.blocks import DaskCompute, MlflowTracking
        from prefect_mltrain.flows import train_pytorch_model

        logging.getLogger("prefect").setLevel(logging.WARNING)
        torch.set_num_threads(args.threads)
        root = Path(tempfile.mkdtemp(prefix="bench-images-"))
        train = str(make_image_dir(root / "train", per_class=args.images, size=args.size, seed=1))
        valid = str(make_image_dir(root / "valid", per_class=4, size=args.size, seed=2))
        compute = DaskCompute(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
        )
        common = {
            "model": args.model,
            "image_size": args.size,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "patience": args.epochs,
            "print_frequency": 1000,
            "compute": compute,
        }
        client = MlflowTracking().client()

        def flow_rates(**extra: int) -> list[float]:
            result = train_pytorch_model(train, valid, **common, **extra)
            history = client.get_metric_history(result.mlflow_run_id, "train_images_per_sec")
            return [m.value for m in sorted(history, key=lambda m: m.step)]

        classes = ("blue", "red")
        rows: dict[str, list[list[float]]] = {"bare loop": [], "flow, 1 process": [], "flow, DDP 2 ranks (gloo)": []}
        # Interleaved rounds, so load from other processes on the machine hits all three alike.
        for _ in range(args.repeats):
            rows["bare loop"].append(bare_loop(train, classes, args.model, args.size, args.batch_size, args.epochs))
            rows["flow, 1 process"].append(flow_rates())
            rows["flow, DDP 2 ranks (gloo)"].append(flow_rates(processes_per_node=2))
        print(
            f"{args.model} {args.size}px, {2 * args.images} training images, batch {args.batch_size}, "
            f"{args.epochs} epochs x {args.repeats} rounds (epoch 1 of each = warm-up, median of the rest), "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs"
        )
        median = {}
        for name, rounds in rows.items():
            median[name] = statistics.median(r for rates in rounds for r in (rates[1:] or rates))
            print(f"  {name:<26} {median[name]:8.1f} img/s   per epoch: {[[round(r, 1) for r in x] for x in rounds]}")
        print(f"flow / bare loop (1 process): {median['flow, 1 process'] / median['bare loop']:.3f}  (target >= 0.97)")
        print(
            f"DDP scaling efficiency (2 ranks): "
            f"{median['flow, DDP 2 ranks (gloo)'] / (2 * median['flow, 1 process']):.3f}"
        )


if __name__ == "__main__":
    main()
