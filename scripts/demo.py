"""`make demo`: sample scene → model → segmentation, all under build/demo/."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.__main__ import main as engine  # noqa: E402


def run(*argv: str) -> None:
    print(f"\n$ python -m engine {' '.join(argv)}", flush=True)
    if engine(list(argv)) != 0:
        sys.exit(f"demo step failed: python -m engine {' '.join(argv)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="build/demo")
    p.add_argument("--size", type=int, default=1024)
    a = p.parse_args()
    out = Path(a.out)
    scene = out / "sample"
    out.mkdir(parents=True, exist_ok=True)
    run("sample", "--out", str(scene), "--size", str(a.size), "--seed", "0")
    run("init-model", "--arch", "unet", "--bands", "4", "--classes", "6",
        "--out", str(out / "unet-random.rsmodel"), "--gsd", "0.5")
    run("info", str(out / "unet-random.rsmodel"))
    run("predict", "--model", str(out / "unet-random.rsmodel"), "--input", str(scene / "t1.tif"),
        "--output", str(out / "t1-classes.tif"), "--probabilities", str(out / "t1-probabilities.tif"),
        "--tile", "256", "--overlap", "32")
    print("\nDemo outputs in", out.resolve())
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(out)}  ({f.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
