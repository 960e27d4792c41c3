"""Time our full ingest of chest radiographs against DCMTK's dcmj2pnm conversion alone; prints the ratio.

Run by hand from the repository root:  python bench/ingest.py [--dir DIR] [--count 50] [--repeats 3]

Goal: ratio ours/dcmtk ≤ 1.0, i.e. validating, de-identifying, writing and rendering a file is no
slower than DCMTK converting it to a PNG.  The comparison is made only on the files dcmj2pnm can
read (it has no JPEG 2000 decoder); the JPEG 2000 files are timed for us alone and reported apart.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` is not an installed package

import pydicom  # noqa: E402
from pydicom.uid import RLELossless  # noqa: E402

from tests import dicom_corpus as corpus  # noqa: E402
from trial.dicom import deidentify, dicom_bytes, read_radiograph, render_display, render_values  # noqa: E402

SECRET = b"benchmark secret, not a real one"
DCMJ2PNM_OPTIONS = ["--write-png", "+Wm"]  # PNG, VOI window from the pixels' min and max

# Sizes of real detectors and CR plates (rows × columns), cycled through the synthetic files.
SIZES = [(3000, 2500), (2500, 2048), (2800, 2330), (3072, 3072), (2140, 1760)]
BITS = [12, 14, 16, 10, 15]
# One file in ten per kind: half uncompressed, as most PACS exports are.
KINDS = ["native"] * 5 + ["jpeg_lossless"] * 2 + ["rle"] + ["j2k"] * 2


@dataclass
class Timings:
    runs: list[float] = field(default_factory=list)  # one total per repeat
    stages: dict[str, float] = field(default_factory=dict)


def build(folder: Path, count: int) -> list[tuple[Path, str]]:
    """Write the corpus: the pydicom-data CR film in four encodings, then synthetic CR/DX films."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, str]] = []

    def put(name: str, kind: str, data: bytes) -> None:
        path = folder / f"{len(files):03d}_{name}.dcm"
        path.write_bytes(data)
        files.append((path, kind))

    film = corpus.real_cr_film("RG1_UNCR.dcm")
    put("RG1_UNCR", "native", film)
    put("RG1_J2KR", "j2k", corpus.real_cr_film("RG1_J2KR.dcm"))
    put("RG1_J2KI", "j2k", corpus.real_cr_film("RG1_J2KI.dcm"))
    put("RG1_JPEGLL", "jpeg_lossless", corpus.jpeg_lossless_from(film))
    ds = pydicom.dcmread(io.BytesIO(film))
    ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    put("RG1_RLE", "rle", corpus.to_bytes(ds))

    i = 0
    while len(files) < count:
        rows, columns = SIZES[i % len(SIZES)]
        bits = BITS[i % len(BITS)]
        kind = KINDS[i % len(KINDS)]
        options = dict(
            rows=rows, columns=columns, bits_stored=bits, seed=i,
            photometric="MONOCHROME1" if i % 3 == 0 else "MONOCHROME2",
            modality="DX" if i % 2 else "CR",
        )
        data = corpus.radiograph_bytes(**options) if kind == "native" else corpus.compressed_bytes(kind, **options)
        put(f"{options['modality']}_{rows}x{columns}_{bits}bit_{kind}", kind, data)
        i += 1
    return files


def ours(path: Path, out: Path, stages: dict[str, float]) -> float:
    """Our whole ingest of one file, from reading it to writing the three files a case stores."""
    t0 = time.perf_counter()
    data = path.read_bytes()
    ds = read_radiograph(data, max_bytes=500_000_000)
    t1 = time.perf_counter()
    clean, _ = deidentify(ds, case_code="C0001", uid_secret=SECRET)
    t2 = time.perf_counter()
    blob = dicom_bytes(clean)
    t3 = time.perf_counter()
    rendered = render_display(ds)
    t4 = time.perf_counter()
    t4b = t4
    if VALUES:  # the viewer's 16-bit values image: made by a worker after enrolment, measured on request
        values = render_values(ds)
        (out / f"{path.stem}.values.png").write_bytes(values.png)
        t4b = time.perf_counter()
    (out / f"{path.stem}.dcm").write_bytes(blob)
    (out / f"{path.stem}.png").write_bytes(rendered.png)
    (out / f"{path.stem}.thumb.png").write_bytes(rendered.thumbnail_png)
    t5 = time.perf_counter()
    for name, seconds in (("read, validate, decode", t1 - t0), ("de-identify", t2 - t1),
                          ("write DICOM bytes", t3 - t2), ("render PNG + thumbnail", t4 - t3),
                          ("render viewer values PNG", t4b - t4), ("write outputs", t5 - t4b)):
        stages[name] = stages.get(name, 0.0) + seconds
    return t5 - t0


def dcmtk(tool: str, path: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([tool, *DCMJ2PNM_OPTIONS, str(path), str(out / f"{path.stem}.dcmtk.png")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def process_start(tool: str) -> float:
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([tool, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


VALUES = False


def main() -> int:
    global VALUES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to build the corpus (default: a temporary folder)")
    parser.add_argument("--count", type=int, default=50, help="number of radiographs (at least 5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-values", action="store_true",
                        help="also time the viewer's values image "
                             "(made by a worker after enrolment, not by the upload)")
    args = parser.parse_args()
    VALUES = args.with_values

    tool = shutil.which("dcmj2pnm")
    if tool is None:
        print("dcmj2pnm not found: install DCMTK (Debian package dcmtk) to run this benchmark.")
        return 2

    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        folder = args.dir or Path(tmp) / "corpus"
        out = Path(tmp) / "out"
        out.mkdir()
        t0 = time.perf_counter()
        files = build(folder, max(args.count, 5))
        print(f"Built {len(files)} chest radiographs in {folder} ({time.perf_counter() - t0:.0f} s).")

        # Which files can DCMTK convert at all?  (Expected: all but JPEG 2000.)
        both, ours_only = [], []
        for path, kind in files:
            ok = subprocess.run([tool, *DCMJ2PNM_OPTIONS, str(path), str(out / "probe.png")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
            (both if ok else ours_only).append((path, kind))
        # Warm our process up once (imports, codec plugins), as a long-running worker is.
        ours(files[0][0], out, {})

        mine, theirs, mine_only = Timings(), Timings(), Timings()
        per_file_ours: dict[Path, list[float]] = {p: [] for p, _ in files}
        per_file_dcmtk: dict[Path, list[float]] = {p: [] for p, _ in both}
        for repeat in range(args.repeats):
            total_ours = total_dcmtk = total_only = 0.0
            for i, (path, _) in enumerate(both):
                # interleaved, and which goes first alternates, so neither gets the warmer cache
                if (i + repeat) % 2:
                    a = ours(path, out, mine.stages)
                    b = dcmtk(tool, path, out)
                else:
                    b = dcmtk(tool, path, out)
                    a = ours(path, out, mine.stages)
                total_ours += a
                total_dcmtk += b
                per_file_ours[path].append(a)
                per_file_dcmtk[path].append(b)
            for path, _ in ours_only:
                seconds = ours(path, out, mine_only.stages)
                total_only += seconds
                per_file_ours[path].append(seconds)
            mine.runs.append(total_ours)
            theirs.runs.append(total_dcmtk)
            mine_only.runs.append(total_only)

        startup = process_start(tool)
        report(files, both, ours_only, mine, theirs, mine_only, per_file_ours, per_file_dcmtk, startup, args.repeats)
        ours_png = statistics.mean((out / f"{p.stem}.png").stat().st_size for p, _ in both)
        dcmtk_png = statistics.mean((out / f"{p.stem}.dcmtk.png").stat().st_size for p, _ in both)
        print()
        print(f"PNG size per file: ours {ours_png / 1e6:.2f} MB (long side ≤ 2048, Huffman-only deflate), "
              f"dcmtk {dcmtk_png / 1e6:.2f} MB (full size, libpng defaults, interlaced).")
    return 0


def report(files, both, ours_only, mine, theirs, mine_only, per_file_ours, per_file_dcmtk, startup, repeats) -> None:
    kinds: dict[str, int] = {}
    for _, kind in files:
        kinds[kind] = kinds.get(kind, 0) + 1
    n = len(both)
    ours_total = statistics.median(mine.runs)
    dcmtk_total = statistics.median(theirs.runs)
    print()
    print("Files:", ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())))
    print("ours : read_radiograph + deidentify + dicom_bytes + render_display (+ render_values with --with-values) "
          "(display PNG, long side ≤ 2048,")
    print("       and a 256 px thumbnail), reading the file and writing the three outputs, in one warm")
    print("       Python process (how a Celery worker runs it).")
    print(f"dcmtk: dcmj2pnm {' '.join(DCMJ2PNM_OPTIONS)} FILE OUT.png: one process per file, as the tool is")
    print(f"       used; process start (dcmj2pnm --version) ≈ {startup * 1000:.0f} ms of each file's time.")
    print("       It converts only: no validation, no de-identification, full size, no thumbnail.")
    print(f"Timing: {repeats} repeats, the two tools interleaved file by file; totals are medians of the repeats.")
    print()
    print(f"On the {n} files both can read (uncompressed, RLE, JPEG lossless):")
    print(f"  ours  total {ours_total:7.2f} s   per file {ours_total / n * 1000:7.0f} ms")
    print(f"  dcmtk total {dcmtk_total:7.2f} s   per file {dcmtk_total / n * 1000:7.0f} ms")
    ratio = ours_total / dcmtk_total
    print(f"  ratio ours/dcmtk = {ratio:.2f}   (goal ≤ 1.00: {'met' if ratio <= 1.0 else 'NOT met'})")
    excl = dcmtk_total - startup * n
    print(f"  ratio with dcmj2pnm's process start taken out: {ours_total / excl:.2f}")
    by_kind: dict[str, tuple[list[float], list[float]]] = {}
    for path, kind in both:
        a, b = by_kind.setdefault(kind, ([], []))
        a.append(statistics.median(per_file_ours[path]))
        b.append(statistics.median(per_file_dcmtk[path]))
    for kind, (a, b) in sorted(by_kind.items()):
        print(f"    {kind:14s} {len(a):3d} files: ours {statistics.mean(a) * 1000:6.0f} ms/file, "
              f"dcmtk {statistics.mean(b) * 1000:6.0f} ms/file, ratio {sum(a) / sum(b):.2f}")
    print("  ours by stage (per file):")
    runs = repeats * n
    for name, seconds in mine.stages.items():
        print(f"    {name:24s} {seconds / runs * 1000:6.0f} ms")
    if ours_only:
        m = len(ours_only)
        total = statistics.median(mine_only.runs)
        print()
        print(f"JPEG 2000 ({m} files; dcmj2pnm cannot decode JPEG 2000, so ours only):")
        print(f"  ours  total {total:7.2f} s   per file {total / m * 1000:7.0f} ms")
        for name, seconds in mine_only.stages.items():
            print(f"    {name:24s} {seconds / (repeats * m) * 1000:6.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
