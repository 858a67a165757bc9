"""Sizes and lineage of the curation regimes over several iterations."""

import datasets
import pytest

from collapsebench.data import add_lineage, count_by
from collapsebench.errors import UserError
from collapsebench.regimes.mixing import accumulate, accumulate_subsample, replace

N_REAL = 100


def real_data():
    ds = datasets.Dataset.from_dict({"text": [f"real {i}" for i in range(N_REAL)]})
    return add_lineage(ds, origin="real", generation=0, prefix="real-", parent="")


def synthetic(k, n):
    ds = datasets.Dataset.from_dict({"text": [f"gen{k} {i}" for i in range(n)], "prompt": [""] * n,
                                     "parent": [f"real-{i:08d}" for i in range(n)]})
    return add_lineage(ds, origin="synthetic", generation=k, prefix=f"g{k:03d}-")


def simulate(make_ctx, regime, iterations=4, n_syn=N_REAL, **kw):
    """Run the regime as the loop would: D(k) from the real data and S(1..k-1)."""
    real, gens, sets = real_data(), [], []
    for k in range(1, iterations + 1):
        ctx = make_ctx(iteration=k, seed=100 + k)
        d = regime(ctx, real, gens, **kw)
        sets.append(d)
        gens.append(synthetic(k, n_syn))
    return sets


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_replace_keeps_size_and_mixes_latest(make_ctx, alpha):
    sets = simulate(make_ctx, replace, alpha=alpha)
    assert [len(d) for d in sets] == [N_REAL] * 4
    assert count_by(sets[0], "generation") == {"0": N_REAL}
    for k, d in enumerate(sets[1:], start=2):
        counts = count_by(d, "generation")
        n_syn = round(alpha * N_REAL)
        # only the latest generation (k-1) replaces real data
        assert counts.get(str(k - 1), 0) == n_syn
        assert counts.get("0", 0) == N_REAL - n_syn
        assert set(counts) <= {"0", str(k - 1)}
        assert len(set(d["id"])) == len(d)  # no row twice
        origins = dict(zip(d["id"], d["origin"]))
        assert all((o == "real") == i.startswith("real-") for i, o in origins.items())


def test_replace_errors_when_too_few_synthetic(make_ctx):
    with pytest.raises(UserError, match="needs 100 synthetic rows"):
        simulate(make_ctx, replace, n_syn=10, alpha=1.0)
    with pytest.raises(UserError, match="alpha"):
        simulate(make_ctx, replace, alpha=1.5)


def test_accumulate_grows_with_all_generations(make_ctx):
    sets = simulate(make_ctx, accumulate, n_syn=50)
    assert [len(d) for d in sets] == [100, 150, 200, 250]
    last = count_by(sets[-1], "generation")
    assert last == {"0": 100, "1": 50, "2": 50, "3": 50}
    assert sets[-1].column_names == ["text", "id", "origin", "generation", "parent"]
    # synthetic rows keep their parent; real rows have none
    parents = dict(zip(sets[-1]["id"], sets[-1]["parent"]))
    assert parents["g002-00000003"] == "real-00000003" and parents["real-00000003"] == ""


def test_accumulate_subsample_keeps_real_size_and_draws_from_pool(make_ctx):
    sets = simulate(make_ctx, accumulate_subsample, iterations=6)
    assert [len(d) for d in sets] == [N_REAL] * 6
    last = count_by(sets[-1], "generation")
    assert set(last) == {"0", "1", "2", "3", "4", "5"}
    # a uniform draw from a pool of 6 equal parts: each part near 1/6 of the rows
    assert all(5 <= c <= 35 for c in last.values())
    assert len(set(sets[-1]["id"])) == N_REAL


def test_regimes_are_seeded(make_ctx):
    a = simulate(make_ctx, replace, alpha=0.5)[-1]["id"]
    b = simulate(make_ctx, replace, alpha=0.5)[-1]["id"]
    assert a == b
