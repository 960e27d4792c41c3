"""Command line for the trial analyses: `python -m stats.methods ANALYSIS FILE.csv [options]` prints JSON.

Every analysis reads one CSV file with a header row and the columns it names below; the result is
printed as one JSON object (non-finite numbers as null). Bad input (a missing file or column, a
value out of its set, an incomplete design) is reported as one line on stderr with exit code 2.
`python -m stats.methods power [options]` reads no file: it prints the power of quality, reading
time and preference and the readers needed for 80 % and 90 % of a paired-parallel design, the
same numbers as the plan's power section and the power page (stats.methods.power.plan_power).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence

__all__ = ["InputError", "main"]


class InputError(Exception):
    """The input file does not fit the analysis; the message says why in one line."""


# --------------------------------------------------------------------------- reading


def read_columns(path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, list[str]]:
    """The named columns of a CSV file as lists of stripped strings."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise InputError(f"{path}: empty file (a header row is needed)")
            header = [name.strip() for name in reader.fieldnames]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                                 f"the file has {', '.join(header) or 'none'}")
            reader.fieldnames = header
            wanted = [c for c in (*required, *optional) if c in header]
            columns: dict[str, list[str]] = {c: [] for c in wanted}
            for line, row in enumerate(reader, start=2):
                for c in wanted:
                    value = row.get(c)
                    if value is None or value.strip() == "":
                        raise InputError(f"{path}, line {line}: empty value in column {c}")
                    columns[c].append(value.strip())
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from exc
    if not columns[required[0]]:
        raise InputError(f"{path}: no data rows")
    return columns


def numbers(values: list[str], column: str) -> list[float]:
    out = []
    for line, value in enumerate(values, start=2):
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"line {line}: column {column} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"line {line}: column {column} must be a finite number, got {value!r}")
        out.append(number)
    return out


def one_of(values: list[str], column: str, allowed: Sequence[str]) -> list[str]:
    for line, value in enumerate(values, start=2):
        if value not in allowed:
            raise InputError(f"line {line}: column {column} must be one of {', '.join(allowed)}, got {value!r}")
    return values


def pair_of(text: str, what: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise InputError(f"--{what} needs two different labels separated by a comma, got {text!r}")
    return parts[0], parts[1]


# --------------------------------------------------------------------------- analyses
# Each handler imports its analysis module after reading the file: scipy takes a second to import,
# and a bad file should be refused at once.


def run_paired(args) -> dict:
    cols = read_columns(args.file, ("case", "arm", "y"))
    from stats.methods.paired import compare_paired

    first, second = pair_of(args.arms, "arms")
    one_of(cols["arm"], "arm", (first, second))
    y = numbers(cols["y"], "y")
    # the case is the unit: repeated rows of a case within an arm (several experts) are averaged
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for case, arm, value in zip(cols["case"], cols["arm"], y):
        sums[case][arm].append(value)
    for case, by_arm in sums.items():
        for arm in (first, second):
            if arm not in by_arm:
                raise InputError(f"case {case!r} has no row in arm {arm!r}: every case needs both arms")
    cases = list(sums)
    x = [sum(sums[c][first]) / len(sums[c][first]) for c in cases]
    z = [sum(sums[c][second]) / len(sums[c][second]) for c in cases]
    result = compare_paired(x, z, log=args.log, confidence_level=args.confidence_level).to_dict()
    return {"analysis": "paired", "difference": f"{first} - {second}", "n_rows": len(y), **result}


def run_lmm(args) -> dict:
    random = [t.strip() for t in args.random.split(",") if t.strip()]
    if not random:
        raise InputError("--random needs at least one grouping term, e.g. reader,case")
    names = sorted({part for term in random for part in term.split(":")} | {args.arm})
    cols = read_columns(args.file, (args.outcome, *names))
    from stats.methods.lmm import fit_lmm

    data = {name: cols[name] for name in names}
    data[args.outcome] = numbers(cols[args.outcome], args.outcome)
    treatment, reference = pair_of(args.arms, "arms")
    one_of(cols[args.arm], args.arm, (treatment, reference))
    result = fit_lmm(data, outcome=args.outcome, arm=args.arm, random=random, log=args.log,
                     treatment=treatment, reference=reference)
    return {"analysis": "lmm", **result.to_dict(confidence_level=args.confidence_level)}


def run_clmm(args) -> dict:
    cols = read_columns(args.file, ("score", "arm", "case"))
    from stats.methods.clmm import fit_clmm

    treatment, reference = pair_of(args.arms, "arms")
    one_of(cols["arm"], "arm", (treatment, reference))
    data = {"score": numbers(cols["score"], "score"), "arm": cols["arm"], "case": cols["case"]}
    result = fit_clmm(data, outcome="score", arm="arm", group="case", treatment=treatment, reference=reference)
    return {"analysis": "clmm", **result.to_dict(confidence_level=args.confidence_level)}


def run_preference(args) -> dict:
    cols = read_columns(args.file, ("case", "expert", "choice"), optional=("side",))
    from stats.methods.preference import NONE, SIDES, analyse_preference

    treatment, reference = pair_of(args.arms, "arms")
    one_of(cols["choice"], "choice", (treatment, reference, NONE))
    side = one_of(cols["side"], "side", SIDES) if "side" in cols else None
    result = analyse_preference(case=cols["case"], expert=cols["expert"], choice=cols["choice"], side=side,
                                treatment=treatment, reference=reference, confidence_level=args.confidence_level)
    return {"analysis": "preference", **result.to_dict()}


def run_detection(args) -> dict:
    cols = read_columns(args.file, ("case", "arm", "reader", "finding", "truth", "call"))
    from stats.methods.detection import analyse_detection

    for column in ("truth", "call"):
        one_of(cols[column], column, ("0", "1"))
    arms = pair_of(args.arms, "arms") if args.arms else None
    result = analyse_detection(case=cols["case"], arm=cols["arm"], reader=cols["reader"], finding=cols["finding"],
                               truth=cols["truth"], call=cols["call"], arms=arms,
                               confidence_level=args.confidence_level)
    return {"analysis": "detection", **result.to_dict()}


def run_delong(args) -> dict:
    cols = read_columns(args.file, ("truth", "score_a", "score_b"))
    from stats.methods.roc import delong_test

    truth = [int(v) for v in numbers(one_of(cols["truth"], "truth", ("0", "1")), "truth")]
    result = delong_test(truth, numbers(cols["score_a"], "score_a"), numbers(cols["score_b"], "score_b"),
                         confidence_level=args.confidence_level)
    return {"analysis": "delong", **result.to_dict()}


def run_mrmc(args) -> dict:
    cols = read_columns(args.file, ("reader", "case", "modality", "truth", "rating"))
    from stats.methods.mrmc import obuchowski_rockette

    truth = numbers(cols["truth"], "truth")
    if any(t not in (0.0, 1.0) for t in truth):
        raise InputError("column truth must be 0 or 1")
    if args.fom != "auc" and args.threshold is None:
        raise InputError(f"--fom {args.fom} needs --threshold T (rating >= T is a positive call)")
    modalities = None
    if args.modalities:
        modalities = [m.strip() for m in args.modalities.split(",")]
        if len(set(modalities)) != len(modalities) or not all(modalities):
            raise InputError(f"--modalities needs distinct labels separated by commas, got {args.modalities!r}")
    result = obuchowski_rockette(reader=cols["reader"], case=cols["case"], modality=cols["modality"], truth=truth,
                                 rating=numbers(cols["rating"], "rating"), fom=args.fom, threshold=args.threshold,
                                 modalities=modalities, confidence_level=args.confidence_level)
    return {"analysis": "mrmc", **result.to_dict()}


def run_power(args) -> dict:
    from stats.methods.power import plan_power

    inputs = {"n_cases": args.cases, "readers_per_arm": args.readers_per_arm, "n_experts": args.experts,
              "n_sites": args.sites, "alpha": args.alpha,
              "quality": {"effect": args.quality_effect, "reader_sd": args.quality_reader_sd,
                          "report_sd": args.quality_report_sd, "residual_sd": args.quality_residual_sd},
              "time": {"time_ratio": args.time_ratio, "reader_sd": args.time_reader_sd,
                       "report_sd": args.time_report_sd, "residual_sd": args.time_residual_sd},
              "preference": {"vote_sd": args.vote_sd, "tie_band": args.tie_band}}
    for name in ("cases", "readers_per_arm"):
        if getattr(args, name) < 2:
            raise InputError(f"--{name.replace('_', '-')} must be at least 2")
    if args.experts < 1 or args.sites < 1:
        raise InputError("--experts and --sites must be at least 1")
    if args.time_ratio <= 0:
        raise InputError("--time-ratio must be positive")
    for name in ("quality_reader_sd", "quality_report_sd", "quality_residual_sd", "time_reader_sd", "time_report_sd",
                 "time_residual_sd", "vote_sd", "tie_band"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 0")
    return {"analysis": "power", "inputs": inputs, **plan_power(inputs, design="paired_parallel")}


def run_agreement(args) -> dict:
    cols = read_columns(args.file, ("item", "rater", "score"))
    from stats.methods.agreement import analyse_agreement

    result = analyse_agreement(item=cols["item"], rater=cols["rater"], score=numbers(cols["score"], "score"),
                               confidence_level=args.confidence_level)
    return {"analysis": "agreement", **result.to_dict()}


# --------------------------------------------------------------------------- plumbing


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must lie strictly between 0 and 1, e.g. 0.95")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stats.methods", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("file", metavar="FILE.csv")
        p.add_argument("--confidence-level", type=_level, default=0.95, metavar="LEVEL")
        p.set_defaults(handler=handler)
        return p

    p = add("paired", run_paired, "per-case difference between arms: columns case, arm, y")
    p.add_argument("--arms", default="assisted,standard", help="the two arms, first - second (default: %(default)s)")
    p.add_argument("--log", action="store_true", help="compare on the log scale (times): ratio of geometric means")

    p = add("lmm", run_lmm, "linear mixed model for the arm effect: columns y, arm and the grouping columns")
    p.add_argument("--random", default="reader,case",
                   help="random-intercept terms, e.g. reader,case,reader:arm,case:arm (default: %(default)s)")
    p.add_argument("--outcome", default="y")
    p.add_argument("--arm", default="arm")
    p.add_argument("--arms", default="assisted,standard", help="treatment,reference (default: %(default)s)")
    p.add_argument("--log", action="store_true", help="model log(y) (reading times)")

    p = add("clmm", run_clmm, "cumulative-logit mixed model for ordinal scores: columns score, arm, case")
    p.add_argument("--arms", default="assisted,standard", help="treatment,reference (default: %(default)s)")

    p = add("preference", run_preference,
            "expert preference: columns case, expert, choice (one of the two arms, or none), "
            "side (optional: left/right, where the treatment report was shown)")
    p.add_argument("--arms", default="assisted,standard", help="treatment,reference (default: %(default)s)")

    p = add("detection", run_detection,
            "sensitivity/specificity and McNemar: columns case, arm, reader, finding, truth, call")
    p.add_argument("--arms", default=None, help="the two arms in comparison order, treatment first (default: sorted)")

    add("delong", run_delong, "AUCs of two scores and the paired DeLong test: columns truth, score_a, score_b")

    p = add("mrmc", run_mrmc, "Obuchowski-Rockette/Hillis MRMC: columns reader, case, modality, truth, rating")
    p.add_argument("--fom", choices=("auc", "sensitivity", "specificity"), default="auc")
    p.add_argument("--threshold", type=float, default=None,
                   help="rating >= T is a positive call (sensitivity, specificity)")
    p.add_argument("--modalities", default=None,
                   help="the modalities in comparison order, e.g. assisted,standard (first - second)")

    add("agreement", run_agreement, "Fleiss/Cohen kappa and ICC(2,1), ICC(3,1): columns item, rater, score")

    p = sub.add_parser("power", help="power and readers needed (paired-parallel design; no input file)",
                       description="Power of quality, reading time and preference, and the readers needed for 80 % "
                                   "and 90 %, for readers randomized to the arms (nested) and crossed with cases. "
                                   "SDs are on each analysis scale: score points, log seconds.")
    p.set_defaults(handler=run_power)
    p.add_argument("--cases", type=int, default=296)
    p.add_argument("--readers-per-arm", type=int, default=10)
    p.add_argument("--experts", type=int, default=5, help="experts scoring each report")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--alpha", type=_level, default=0.05)
    p.add_argument("--quality-effect", type=float, default=0.25, help="difference to detect, points")
    p.add_argument("--quality-reader-sd", type=float, default=0.25)
    p.add_argument("--quality-report-sd", type=float, default=0.35, help="case × arm")
    p.add_argument("--quality-residual-sd", type=float, default=0.6, help="one expert's score")
    p.add_argument("--time-ratio", type=float, default=0.82, help="ratio of geometric means to detect")
    p.add_argument("--time-reader-sd", type=float, default=0.2, help="log scale")
    p.add_argument("--time-report-sd", type=float, default=0.0, help="log scale")
    p.add_argument("--time-residual-sd", type=float, default=0.3, help="log scale")
    p.add_argument("--vote-sd", type=float, default=0.5, help="an expert's vote noise, points")
    p.add_argument("--tie-band", type=float, default=0.25, help="no preference within ± this, points")
    return parser


def _jsonable(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):   # numpy scalars
        return _jsonable(value.item())
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except (InputError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(_jsonable(result), indent=2, allow_nan=False))
    return 0
