"""ResNet-50 training throughput on synthetic 224 px images, with the trainer's own step function.

    python benchmarks/gpu_resnet50.py                         # on a GPU: AMP + channels_last
    python benchmarks/gpu_resnet50.py --steps 2 --batch-size 2 --size 64   # CPU smoke check

Uses `make_train_step` from `prefect_mltrain.pytorch.train`, so it measures the code that
`train_pytorch_model` runs per batch (no data loading: synthetic tensors already on the device).
Anchors: about 2,470 img/s on one A100 with mixed precision (NVIDIA's published figure);
Azure ML's designer about 200 img/s per V100 (seed 004: 1,670 img/s on 8 V100s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()

    import torch

    from prefect_mltrain.pytorch.model import build_model
    from prefect_mltrain.pytorch.train import make_train_step

    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    on_gpu = device.type == "cuda"
    amp, channels_last = on_gpu and not args.no_amp, on_gpu and not args.no_channels_last
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    model = build_model("resnet50", 1000).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    step = make_train_step(model, optimizer, torch.nn.CrossEntropyLoss(), device, amp, channels_last)
    images = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    target = torch.randint(0, 1000, (args.batch_size,), device=device)
    model.train()
    for _ in range(args.warmup):
        step(images, target)
    if on_gpu:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step(images, target)
    float(loss)  # waits for the device
    elapsed = time.perf_counter() - started
    label = torch.cuda.get_device_name(device) if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"resnet50 {args.size}px batch {args.batch_size} on {label}, amp={amp}, channels_last={channels_last}, "
        f"torch {torch.__version__}: {args.steps * args.batch_size / elapsed:.1f} img/s "
        f"({args.steps} steps in {elapsed:.2f} s)"
    )


if __name__ == "__main__":
    main()
