"""``.carry/``: what gpu-check takes to a GPU machine that has no network.

Fashion-MNIST's four files (the convergence step's data) and wheels of the
packages the machine's image lacks (``refbench.gpu_check.image.CARRY_PACKAGES``),
for its Python (3.12). ``fill`` fills the folder on a machine with a network;
``problems`` says what it lacks. The device call names ``.carry`` in its
carry, and its command installs the wheels first (README: GPU check).
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

from refbench.gpu_check.image import CARRY_PACKAGES, ROOT

CARRY = ROOT / ".carry"
CARRY_DATA = CARRY / "data"
CARRY_WHEELS = CARRY / "wheels"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
LIMIT_BYTES = 64 * 2**20   # all a device call carries, the working tree included


def _wheels(name: str) -> list:
    return list(CARRY_WHEELS.glob(f"{name.replace('-', '_')}-*.whl"))


def problems() -> list[str]:
    """What the carry folder lacks for a run without network."""
    found = [f"{CARRY_DATA / 'fashion-mnist' / name} is missing (run `python -m refbench.gpu_check --fill-carry`)"
             for name in FASHION_FILES if not (CARRY_DATA / "fashion-mnist" / name).is_file()]
    found += [f"no wheel of {name} in {CARRY_WHEELS} (run `python -m refbench.gpu_check --fill-carry`)"
              for name in CARRY_PACKAGES if not _wheels(name)]
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file()) if CARRY.is_dir() else 0
    if size > LIMIT_BYTES:
        found.append(f"{CARRY} holds {size / 2**20:.1f} MiB, over the 64 MiB a device call carries")
    return found


def fill() -> None:
    """Put Fashion-MNIST (found and checked by refbench's data layer, gzipped) and the wheels into ``.carry/``."""
    from refbench.models.data._images import locate

    found = locate("fashion-mnist")
    for split in ("train", "test"):
        found.read(split)   # every file checked before it travels
    data = CARRY_DATA / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for name, path in found.files.items():
        target = data / f"{name}.gz"
        if path.suffix == ".gz":
            shutil.copyfile(path, target)
        else:
            with open(path, "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    CARRY_WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(CARRY_WHEELS),
                    *CARRY_PACKAGES], check=True)
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"{CARRY}: Fashion-MNIST from {found.where} and {len(list(CARRY_WHEELS.glob('*.whl')))} wheels, "
          f"{size / 2**20:.1f} MiB")
