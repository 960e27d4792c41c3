"""The reference R script of an export (no Django): the primary and key secondaries refitted by lme4 and ordinal.

A statistician who does not want to trust our code re-fits the confirmatory analyses in R from the
exported tables: `Rscript analysis/reference_analysis.R [EXPORT_FOLDER]`. The script is written for
one run: it names the models the run fitted (the random terms and covariates each analysis actually
used, read from the run's results), and applies the plan's estimands with the flags of
`analysis/analysis_table.csv` (stats.estimands): the rows of each endpoint are those whose `in_…`
flag is 1, a wrong-arm read is analysed in its randomized arm under a treatment policy, and the
votes follow the strategies of the preference estimand. It prints one tab-separated line per number,
`analysis quantity value`, the names of results.json (`analyses.<analysis>.result.<quantity>`).

R settings: lmer with BOBYQA run to tolerances of 1e-14 (lme4's defaults stop short of the REML
optimum by 1e-4 to 1e-3 in the Satterthwaite df, see docs/statistics.md); glmer likewise, with its
inner PIRLS iterations converged to 1e-13 (with lme4's default tolPwrss = 1e-7 its Laplace deviance
was off ours by up to 2.5e-4 at the same parameters, which moved a flat optimum by up to 0.7 % of
the SE; converged, the two deviances agree to 3e-9, and to 1e-7–4e-6 where the likelihood is flat),
and the best of three optimizers kept: with a variance on the boundary one R process in four stopped
BOBYQA at a log-likelihood 0.011 below the optimum, and where the likelihood has two maxima (a second
one far out in the case SD) one optimizer alone can stop at the lower; clmm with its defaults
(Laplace). Arms are X
and Y, X − Y, as in the results: the real arms of an unblinded export are recoded by arms.csv.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCRIPT = "analysis/reference_analysis.R"
_LMM_ENDPOINTS = {"quality": "score", "radpeer": "radpeer_score"}

_HEAD = r'''# Reference analysis of CXR-Trial {trial}, analysis run {run}: the primary and key secondary analyses of
# the frozen analysis plan (version {plan_version}, SHA-256 {plan_sha256}), refitted in R from the exported tables.
#
#   Rscript reference_analysis.R [EXPORT_FOLDER]      (default: the folder above this script's)
#
# Prints one line per number: analysis <TAB> quantity <TAB> value, named as in results.json
# (analyses.<analysis>.result.<quantity>). Needs R >= 4.2 with lme4, lmerTest and ordinal.
# Arms are X and Y and every effect is X - Y (X / Y for times), as in results.json.
suppressPackageStartupMessages({{library(lme4); library(lmerTest); library(ordinal)}})
if (!exists("export_dir")) {{
  args <- commandArgs(trailingOnly = TRUE)
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  export_dir <- if (length(args) >= 1) args[1] else if (length(file_arg)) {{
    dirname(dirname(normalizePath(sub("^--file=", "", file_arg[1]))))
  }} else "."
}}
rd <- function(path) read.csv(file.path(export_dir, path), stringsAsFactors = FALSE, na.strings = "",
                              encoding = "UTF-8")
out <- function(analysis, quantity, x) cat(sprintf("%s\t%s\t%.17g\n", analysis, quantity, x), sep = "")
cases <- rd("csv/cases.csv"); reads <- rd("csv/reads.csv"); scores <- rd("csv/quality_scores.csv")
votes <- rd("csv/preferences.csv"); at <- rd("analysis/analysis_table.csv")
# arm codes: an unblinded export holds the real arms, arms.csv says which is X
code <- c(X = "X", Y = "Y")
if (file.exists(file.path(export_dir, "arms.csv"))) {{ m <- rd("arms.csv"); code <- setNames(m$code, m$arm) }}
recode <- function(a) {{ r <- unname(code[a]); r[is.na(r)] <- a[is.na(r)]; r }}
site_of <- function(case) cases$site[match(case, cases$case)]
period_of <- function(read) reads$period[match(read, reads$read)]
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", xtol_abs = 1e-14,
                     ftol_abs = 1e-16, xtol_rel = 1e-14, ftol_rel = 1e-16, maxeval = 1e5))
# glmer: the Laplace deviance with its inner (PIRLS) iterations converged (lme4's default tolPwrss = 1e-7 leaves the
# deviance off by up to ~1e-4, enough to move a flat optimum), then BOBYQA run to its end
glmer_tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-13,
                            optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", xtol_abs = 1e-12, ftol_abs = 1e-14,
                                           xtol_rel = 1e-12, ftol_rel = 1e-14, maxeval = 1e5))
# a variance on the boundary makes the surface flat: one optimizer can stop short, so three are run and the best
# fit is polished from where it stopped
glmer_best <- function(formula, data) {{
  controls <- list(glmer_tight, glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13, optCtrl = list(maxfun = 1e5)),
                   glmerControl(optimizer = "Nelder_Mead", tolPwrss = 1e-13, optCtrl = list(maxfun = 1e5)))
  fits <- Filter(Negate(is.null), lapply(controls, function(ctl) tryCatch(
    suppressMessages(glmer(formula, data = data, family = binomial, control = ctl)), error = function(e) NULL)))
  best <- fits[[which.max(vapply(fits, function(f) as.numeric(logLik(f)), 0))]]
  polished <- tryCatch(suppressMessages(update(best, start = list(theta = getME(best, "theta"),
                                                                   fixef = fixef(best)), control = glmer_tight)),
                       error = function(e) best)
  if (as.numeric(logLik(polished)) > as.numeric(logLik(best))) polished else best
}}
# the rows of an endpoint under the plan's estimand: analysis-table flag in_<endpoint> = 1; a read in the wrong
# arm is analysed in its randomized arm when the plan takes a treatment policy for it
rows_of <- function(d, flag, randomize_wrong_arm) {{
  keep <- at$read[at[[flag]] %in% 1]
  d <- d[d$read %in% keep, ]
  if (randomize_wrong_arm) {{
    w <- at$ie_wrong_arm[match(d$read, at$read)] %in% 1
    d$arm[w] <- at$randomized_arm[match(d$read[w], at$read)]
  }}
  d$arm <- factor(recode(d$arm), levels = c("Y", "X"))
  d$site <- site_of(d$case); d$period <- period_of(d$read)
  for (v in intersect(c("case", "reader", "expert", "site", "period"), names(d))) d[[v]] <- factor(d[[v]])
  d
}}
lmm_out <- function(name, m) {{
  a <- coef(summary(m))["armX", ]
  out(name, "estimate", a[["Estimate"]]); out(name, "se", a[["Std. Error"]]); out(name, "df", a[["df"]])
  out(name, "pvalue", a[["Pr(>|t|)"]])
}}
'''


def _formula(outcome: str, covariates: list[str], terms: list[str]) -> str:
    fixed = " + ".join(["arm", *covariates])
    random = " + ".join(f"(1 | {t})" for t in terms)
    return f"{outcome} ~ {fixed} + {random}"


def _strategy(plan: Mapping[str, Any], endpoint: str, event: str) -> str:
    est = plan.get("estimands")
    return est[endpoint]["intercurrent_events"][event] if est else "as_recorded"


def _lmm_block(key: str, analysis: Mapping[str, Any], plan: Mapping[str, Any]) -> str:
    endpoint, test = analysis["endpoint"], analysis["test"]
    terms, covs = analysis["random_terms"], analysis.get("covariates", [])
    tp = "TRUE" if _strategy(plan, endpoint, "wrong_arm") == "treatment_policy" else "FALSE"
    if endpoint in _LMM_ENDPOINTS:
        field = _LMM_ENDPOINTS[endpoint]
        lines = [f"# {key}: {analysis.get('test_label', test)}",
                 f"d <- rows_of(scores[!is.na(scores${field}), ], \"in_{endpoint}\", {tp})"]
        if test == "lmm":
            lines += [f"m <- lmer({_formula(field, covs, terms)}, data = d, control = tight)",
                      f"lmm_out(\"{key}\", m)"]
        else:   # ordinal_glmm: ordinal::clmm with the same crossed intercepts (Laplace)
            lines += [f"d${field} <- factor(d${field}, ordered = TRUE)",
                      f"m <- clmm({_formula(field, covs, terms)}, data = d, link = \"logit\")",
                      "co <- coef(summary(m))",
                      f"out(\"{key}\", \"estimate\", co[\"armX\", \"Estimate\"])",
                      f"out(\"{key}\", \"ml_se\", co[\"armX\", \"Std. Error\"])",
                      f"out(\"{key}\", \"pvalue_z\", co[\"armX\", \"Pr(>|z|)\"])"]
        return "\n".join(lines) + "\n"
    # reading time: the log-scale model, and the same model on seconds for the difference in seconds
    field = (plan.get("estimands") or {}).get("reading_time", {}).get("variable", "active_seconds")
    return "\n".join([
        f"# {key}: {analysis.get('test_label', test)}",
        f"d <- rows_of(reads, \"in_reading_time\", {tp})",
        f"m <- lmer({_formula(f'log({field})', covs, terms)}, data = d, control = tight)",
        f"lmm_out(\"{key}\", m)",
        f"out(\"{key}\", \"ratio\", exp(fixef(m)[[\"armX\"]]))",
        f"m <- lmer({_formula(field, covs, terms)}, data = d, control = tight)",
        f"out(\"{key}\", \"difference_seconds\", fixef(m)[[\"armX\"]])",
    ]) + "\n"


def _preference_block(key: str, analysis: Mapping[str, Any], plan: Mapping[str, Any]) -> str:
    result = analysis.get("result") or {}
    crossover = "reader" in (result.get("n_groups") or {})
    lines = [f"# {key}: {analysis.get('test_label', 'preference GLMM')}",
             "v <- votes",
             "arms <- sort(unique(reads$arm))",
             "v$right_arm <- ifelse(v$left_arm == arms[1], arms[2], arms[1])",
             "read_id <- function(case, reader, arm) reads$read[match(paste(case, reader, arm), "
             "paste(reads$case, reads$reader, reads$arm))]",
             "v$left_read <- read_id(v$case, v$left_reader, v$left_arm)",
             "v$right_read <- read_id(v$case, v$right_reader, v$right_arm)",
             "flag <- function(read, col) at[[col]][match(read, at$read)] %in% 1"]
    if _strategy(plan, "preference", "draft_unavailable") == "hypothetical":
        lines.append("v <- v[!(v$case %in% at$case[at$ie_draft_unavailable %in% 1]), ]")
    for event in ("report_corrected", "wrong_arm"):
        if _strategy(plan, "preference", event) == "hypothetical":
            col = f"ie_{event}"
            lines += [f"bad <- at$read[at${col} %in% 1]",
                      "v <- v[!(v$left_read %in% bad | v$right_read %in% bad |",
                      "         ((is.na(v$left_read) | is.na(v$right_read)) &",
                      "          v$case %in% at$case[at$read %in% bad])), ]"]
    if _strategy(plan, "preference", "wrong_arm") == "treatment_policy":
        lines += ["wl <- flag(v$left_read, \"ie_wrong_arm\"); wr <- flag(v$right_read, \"ie_wrong_arm\")",
                  "nl <- ifelse(wl, at$randomized_arm[match(v$left_read, at$read)], v$left_arm)",
                  "nr <- ifelse(wr, at$randomized_arm[match(v$right_read, at$read)], v$right_arm)",
                  "keep <- !((wl | wr) & (is.na(v$left_read) | is.na(v$right_read) | nl == nr))",
                  "v$preferred <- ifelse(v$preferred == v$left_arm, nl, ifelse(v$preferred == v$right_arm, nr, "
                  "v$preferred))",
                  "v$left_arm <- nl; v$right_arm <- nr; v <- v[keep, ]"]
    lines += [
        "v$preferred <- recode(v$preferred); v$left_code <- recode(v$left_arm)",
        "# the reader of each report: from the vote's pair, else the one reader who submitted the case in that arm",
        "x_reader <- ifelse(v$left_code == \"X\", v$left_reader, v$right_reader)",
        "y_reader <- ifelse(v$left_code == \"X\", v$right_reader, v$left_reader)",
        "sub <- reads[reads$status == \"submitted\", ]; sub$code <- recode(sub$arm)",
        "sole <- function(case, arm) { r <- unique(sub$reader[sub$case == case & sub$code == arm]); "
        "if (length(r) == 1) r else NA }",
        "known <- !is.na(v$left_reader) & !is.na(v$right_reader) & v$left_code %in% c(\"X\", \"Y\")",
        "for (i in which(!known)) { x_reader[i] <- sole(v$case[i], \"X\"); y_reader[i] <- sole(v$case[i], \"Y\") }",
        "v$x_reader <- x_reader; v$y_reader <- y_reader",
        "v <- v[v$preferred %in% c(\"X\", \"Y\") & !is.na(v$x_reader) & !is.na(v$y_reader), ]",
        "v$y <- as.integer(v$preferred == \"X\")",
        ("m <- glmer_best(y ~ 1 + (1 | case) + (1 | expert) + (1 | x_reader), v)" if crossover else
         "m <- glmer_best(y ~ 1 + (1 | case) + (1 | expert) + (1 | x_reader) + (1 | y_reader), v)"),
        "b <- coef(summary(m))[\"(Intercept)\", ]",
        f"out(\"{key}\", \"log_odds\", b[[\"Estimate\"]]); out(\"{key}\", \"ml_se\", b[[\"Std. Error\"]])",
        f"out(\"{key}\", \"estimate\", plogis(b[[\"Estimate\"]]))",
        f"out(\"{key}\", \"log_likelihood\", as.numeric(logLik(m)))",
    ]
    return "\n".join(lines) + "\n"


def reference_script(results: Mapping[str, Any], *, trial: str, run: int, plan_version: int,
                     plan_sha256: str) -> str:
    """The R script for a run's results (module docstring): one block per primary and key secondary analysis
    that R can refit (LMMs, the ordinal GLMM, the preference GLMM), and the ordinal sensitivity of the primary's
    endpoint; any other is named in a comment."""
    plan = results.get("plan_read_as") or {}
    parts = [_HEAD.format(trial=trial, run=run, plan_version=plan_version, plan_sha256=plan_sha256)]
    primary_endpoint = next((a["endpoint"] for a in results["analyses"].values() if a["role"] == "primary"), None)
    for key in results["order"]:
        a = results["analyses"][key]
        wanted = a["role"] in ("primary", "secondary") or (
            a["role"] == "sensitivity" and a["test"] == "ordinal_glmm" and a["endpoint"] == primary_endpoint)
        if not wanted:
            continue
        if a["status"] != "ok":
            parts.append(f"# {key}: not estimable in the run ({a.get('reason', '')[:200]}); not refitted\n")
        elif (a["test"] == "lmm" and a["endpoint"] in ("quality", "radpeer", "reading_time")) or (
                a["test"] == "ordinal_glmm" and a["endpoint"] in ("quality", "radpeer")):
            parts.append(_lmm_block(key, a, plan) if "random_terms" in a else
                         f"# {key}: the run's results (an older results schema) do not name the model's terms\n")
        elif a["endpoint"] == "preference" and a["test"] == "glmm":
            parts.append(_preference_block(key, a, plan))
        else:
            parts.append(f"# {key}: {a['test']} has no R counterpart in this script\n")
    return "\n".join(parts)
