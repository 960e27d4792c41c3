"""Run R from the r_oracle tests: a missing Rscript or R package fails the test with a message, never skips it."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile

import pytest

_MISSING_PACKAGE = re.compile(r"there is no package called [‘'\"]?([A-Za-z0-9.]+)")


def rscript_path() -> str:
    """The Rscript executable, or a test failure that says how to install it."""
    path = shutil.which("Rscript")
    if path is None:
        pytest.fail(
            "Rscript is not on PATH: the r_oracle tests compare with R. "
            "Install it, e.g. `apt-get install r-base-core r-cran-lme4 r-cran-lmertest "
            "r-cran-ordinal r-cran-proc r-cran-psych`.",
            pytrace=False,
        )
    return path


def run_r(script: str, *, timeout: float = 120) -> str:
    """Run `script` with `Rscript --vanilla` and return its stdout.

    Fails the calling test (pytest.fail) when Rscript is missing, a package is missing, the
    script errors, or it runs past `timeout` seconds; the message carries R's stderr.
    """
    rscript = rscript_path()
    with tempfile.TemporaryDirectory(prefix="cxr_r_") as tmp:
        path = os.path.join(tmp, "script.R")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script)
        try:
            proc = subprocess.run(
                [rscript, "--vanilla", path],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=tmp,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"Rscript ran past {timeout} s", pytrace=False)
    if proc.returncode != 0:
        missing = _MISSING_PACKAGE.search(proc.stderr)
        if missing:
            pytest.fail(
                f"R package {missing.group(1)!r} is not installed: the r_oracle tests need it "
                f"(Debian: r-cran-{missing.group(1).lower()}).\n{proc.stderr[-2000:]}",
                pytrace=False,
            )
        pytest.fail(f"Rscript failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout


@functools.cache
def _missing_packages(names: tuple[str, ...]) -> tuple[str, ...]:
    vec = ", ".join(f'"{n}"' for n in names)
    out = run_r(
        f"pk <- c({vec}); ok <- vapply(pk, requireNamespace, logical(1), quietly = TRUE);\n"
        'cat(pk[!ok], sep = "\\n")\n',
        timeout=60,
    )
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def require_r_packages(*names: str) -> None:
    """Fail the calling test with a clear message unless Rscript and every named R package are available."""
    missing = _missing_packages(tuple(names))
    if missing:
        debs = " ".join(f"r-cran-{n.lower()}" for n in missing)
        pytest.fail(
            f"R package(s) {', '.join(missing)} not installed: the r_oracle tests need them "
            f"(Debian: apt-get install {debs}).",
            pytrace=False,
        )
