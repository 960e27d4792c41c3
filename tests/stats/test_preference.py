"""Expert preference: majority per case, R binom.test / prop.test as oracle, clustered vote share, size and coverage."""
import numpy as np
import pytest
import statsmodels.api as sm

from stats.methods.preference import analyse_preference, case_majority
from tests.stats.rscript import run_r

ARMS = {"treatment": "assisted", "reference": "standard"}


def r_numbers(script: str) -> list[float]:
    return [float(v) for v in run_r(script).split()]


def simulate_votes(rng, n_cases: int, n_experts: int = 5, effect: float = 0.0, p_none: float = 0.2):
    """Votes with a case-level latent preference (experts of a case agree more than chance), sides randomized."""
    case, expert, choice, side = [], [], [], []
    for c in range(n_cases):
        latent = rng.normal(effect, 1.2)                  # how much better the assisted report of this case is
        p_assisted = (1 - p_none) / (1 + np.exp(-latent))
        for e in range(n_experts):
            u = rng.random()
            case.append(f"c{c}")
            expert.append(f"e{e}")
            choice.append("assisted" if u < p_assisted else "none" if u < p_assisted + p_none else "standard")
            side.append("left" if rng.random() < 0.5 else "right")
    return case, expert, choice, side


def test_case_outcome_is_the_strict_majority_of_its_experts():
    assert case_majority(["assisted", "assisted", "assisted", "standard", "none"]) == "assisted"
    assert case_majority(["standard", "standard", "standard", "assisted", "assisted"]) == "standard"
    # 2 assisted, 2 standard, 1 none: nobody has a majority, the case is a tie
    assert case_majority(["assisted", "assisted", "standard", "standard", "none"]) == "none"
    assert case_majority(["none", "none", "none", "assisted", "standard"]) == "none"


def test_share_counts_ties_in_the_denominator():
    votes = {"a": ["assisted"] * 3, "b": ["assisted"] * 3, "c": ["standard"] * 3, "d": ["none"] * 3}
    case = [c for c, v in votes.items() for _ in v]
    expert = [f"e{i}" for v in votes.values() for i in range(len(v))]
    choice = [x for v in votes.values() for x in v]
    res = analyse_preference(case=case, expert=expert, choice=choice, treatment="assisted", reference="standard")
    assert (res.wins, res.losses, res.ties, res.n_cases) == (2, 1, 1, 4)
    assert res.share == 0.5                  # 2 of 4 cases, the tie included
    assert res.share_decisive == pytest.approx(2 / 3)
    assert res.share_ties_split == pytest.approx(2.5 / 4)


def test_refuses_unknown_choice_and_double_votes():
    with pytest.raises(ValueError, match="choice must be one of"):
        analyse_preference(case=["a"], expert=["e"], choice=["better"], treatment="assisted", reference="standard")
    with pytest.raises(ValueError, match="voted twice"):
        analyse_preference(case=["a", "a"], expert=["e", "e"], choice=["assisted", "none"], **ARMS)


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed,effect", [(11, 0.0), (12, 0.5), (13, -0.3)])
def test_binomial_wilson_and_position_tests_match_r(seed, effect):
    rng = np.random.default_rng(seed)
    case, expert, choice, side = simulate_votes(rng, 73, effect=effect)
    res = analyse_preference(case=case, expert=expert, choice=choice, side=side, **ARMS)
    pos = res.position
    r = r_numbers(f"""
        b <- binom.test({res.wins}, {res.wins + res.losses}, 0.5)
        w <- prop.test({res.wins}, {res.n_cases}, correct = FALSE)
        s <- prop.test({res.votes_all.votes_treatment}, {res.votes_all.votes}, correct = FALSE)
        p <- binom.test({pos.left_chosen}, {pos.votes}, 0.5)
        cat(sprintf("%.17g", c(b$p.value, b$conf.int, w$conf.int, p$p.value)), "\\n")""")
    assert res.pvalue == pytest.approx(r[0], rel=1e-10)
    assert (res.decisive_low, res.decisive_high) == pytest.approx(r[1:3], rel=1e-8)
    assert res.confidence_interval() == pytest.approx(r[3:5], rel=1e-10)
    assert pos.pvalue == pytest.approx(r[5], rel=1e-10)


def test_vote_share_interval_is_the_case_clustered_sandwich():
    rng = np.random.default_rng(5)
    case, expert, choice, _ = simulate_votes(rng, 60)
    res = analyse_preference(case=case, expert=expert, choice=choice, treatment="assisted", reference="standard")
    y = np.array([c == "assisted" for c in choice], dtype=float)
    groups = np.unique(case, return_inverse=True)[1]
    # intercept-only OLS with cluster-robust SE (CR1, G/(G−1) correction): the same ratio-estimator variance
    fit = sm.OLS(y, np.ones_like(y)).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert res.votes_all.share == pytest.approx(fit.params[0])
    assert res.votes_all.se == pytest.approx(fit.bse[0], rel=1e-10)


def test_position_bias_counts_the_side_of_the_chosen_report():
    res = analyse_preference(case=["a", "b", "c", "d"], expert=["e"] * 4,
                             choice=["assisted", "standard", "assisted", "none"],
                             side=["left", "left", "right", "left"], treatment="assisted", reference="standard")
    # a: assisted on the left, chosen -> left; b: assisted left, standard chosen -> right; c: right; d: no preference
    assert (res.position.left_chosen, res.position.votes) == (1, 3)


def test_binomial_test_holds_its_size_and_intervals_cover_under_no_effect():
    rng = np.random.default_rng(20240602)
    reps, n_cases = 600, 60
    reject = cover_case = cover_vote = cover_naive = 0
    # true case-level share and vote-level share under this null model, from one very large simulation
    big_case, big_expert, big_choice, _ = simulate_votes(np.random.default_rng(1), 40000)
    big = analyse_preference(case=big_case, expert=big_expert, choice=big_choice, **ARMS)
    true_share, true_vote = big.share, big.votes_all.share
    for _ in range(reps):
        case, expert, choice, _ = simulate_votes(rng, n_cases)
        res = analyse_preference(case=case, expert=expert, choice=choice, treatment="assisted", reference="standard")
        reject += res.pvalue < 0.05
        cover_case += res.low <= true_share <= res.high
        cover_vote += res.votes_all.low <= true_vote <= res.votes_all.high
        p, m = res.votes_all.share, res.votes_all.votes
        half = 1.96 * np.sqrt(p * (1 - p) / m)         # the naive interval that treats votes as independent
        cover_naive += p - half <= true_vote <= p + half
    tol = 3 * np.sqrt(0.05 * 0.95 / reps)
    assert reject / reps <= 0.05 + tol                  # the exact test is conservative, never liberal
    assert abs(cover_case / reps - 0.95) <= tol
    assert abs(cover_vote / reps - 0.95) <= tol
    assert cover_naive / reps < cover_vote / reps      # votes of one case are correlated: naive undercovers


# --------------------------------------------------------------------------------------------
# Missing experts (issue 14): a majority needs at least min_votes votes


def test_a_case_majority_needs_min_votes_votes_among_those_cast():
    assert case_majority(["X", "X"], min_votes=3) == "none"            # two experts left: no majority
    assert case_majority(["X", "X", "Y"], min_votes=3) == "X"
    assert case_majority(["X", "X", "X", "Y"], min_votes=3) == "X"      # 3 of 4 votes cast
    assert case_majority(["X", "X", "Y", "Y"], min_votes=3) == "none"   # 2 of 4 is not a strict majority
    assert case_majority(["X", "X"]) == "X"                             # schema-1 plans: any number of votes


def test_cases_with_too_few_votes_are_ties_counted_apart_and_stay_in_the_denominator():
    votes = {"c1": ["X"] * 5, "c2": ["X", "X"], "c3": ["Y", "Y", "Y", "X"], "c4": ["X", "none", "Y"]}
    case = [c for c, v in votes.items() for _ in v]
    expert = [f"e{i}" for v in votes.values() for i in range(len(v))]
    choice = [x for v in votes.values() for x in v]
    res = analyse_preference(case=case, expert=expert, choice=choice, treatment="X", reference="Y", min_votes=3)
    assert (res.n_cases, res.wins, res.losses, res.ties, res.too_few_votes) == (4, 1, 1, 2, 1)
    assert res.share == 1 / 4 and res.share_decisive == 1 / 2 and res.min_votes == 3
    loose = analyse_preference(case=case, expert=expert, choice=choice, treatment="X", reference="Y")
    assert (loose.wins, loose.ties, loose.too_few_votes) == (2, 1, 0)
    with pytest.raises(ValueError, match="min_votes"):
        analyse_preference(case=case, expert=expert, choice=choice, treatment="X", reference="Y", min_votes=0)
