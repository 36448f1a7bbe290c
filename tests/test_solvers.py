"""Solvers: convergence to closed-form MAP solutions, agreement with deepinv's iterates, schedules, traces."""
from __future__ import annotations

import pytest
import torch
from deepinv.optim import PnP, optim_builder
from deepinv.optim.data_fidelity import L2

from pnprgm import operators
from pnprgm import solvers
from pnprgm.errors import UserError
from pnprgm.restoration import configure
from pnprgm.denoisers.tikhonov import TikhonovDenoiser
from pnprgm.metrics import psnr
from pnprgm.solvers.base import PnPConfig

PROBLEMS = ["blur:gaussian,sigma=1", "sr2", "mask:random,rate=0.5,seed=0"]
SHAPE = (1, 8, 10)
SIGMA, GAMMA = 0.3, 1.0


def dense_matrix(fn, shape) -> torch.Tensor:
    """Matrix of a linear map on images of ``shape`` (columns = images of unit vectors)."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return fn(basis).reshape(n, -1).T


def laplacian(x: torch.Tensor) -> torch.Tensor:
    return 4 * x - sum(torch.roll(x, s, d) for s in (1, -1) for d in (-1, -2))


def problem(spec: str):
    physics = operators.build(spec, SHAPE, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((1, *SHAPE), generator=generator, dtype=torch.float64)
    clean = physics.A(x)
    y = clean + 0.01 * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return physics, y


@pytest.mark.parametrize("spec", PROBLEMS)
@pytest.mark.parametrize("name", ["drs", "admm", "hqs"])
def test_tikhonov_prior_reaches_closed_form_map(spec, name):
    """With D = prox of w/2||grad x||^2, DRS/ADMM reach argmin 1/2||Ax-y||^2 + (sigma^2/gamma) g(x);
    HQS reaches the same with f replaced by its Moreau envelope (closed form below)."""
    physics, y = problem(spec)
    A = dense_matrix(physics.A, SHAPE)
    L = dense_matrix(laplacian, SHAPE)
    lam = SIGMA**2 / GAMMA
    b = y.flatten()
    if name == "hqs":
        M = torch.linalg.inv(torch.eye(A.shape[0], dtype=torch.float64) + GAMMA * A @ A.T)
        expected = torch.linalg.solve(A.T @ M @ A + lam * L, A.T @ M @ b)
    else:
        expected = torch.linalg.solve(A.T @ A + lam * L, A.T @ b)
    solver = solvers.build(name, iterations=3000, sigma_start=SIGMA, sigma_end=SIGMA, stepsize=GAMMA, tol=1e-13)
    result = solver.solve(y, physics, TikhonovDenoiser(), physics.A_adjoint(y))
    error = (result.x.flatten() - expected).norm() / expected.norm()
    assert error < 1e-4, f"{name} on {spec}: relative error {error:.2e}"


@pytest.mark.parametrize("name,iteration", [("drs", "DRS"), ("admm", "ADMM"), ("hqs", "HQS")])
def test_same_iterates_as_deepinv(name, iteration):
    """Our loops reproduce deepinv's optim iterates (same ordering, same per-iteration parameters)."""
    physics, y = problem("blur:gaussian,sigma=1")
    config = PnPConfig(iterations=6, sigma_start=0.2, sigma_end=0.05, lam=0.23)
    sigmas, stepsizes = config.sigmas(0.01), config.stepsizes(0.01)
    denoiser = TikhonovDenoiser()
    x0 = physics.A_adjoint(y)
    ours = []
    solvers.build(name, config).solve(y, physics, denoiser, x0, noise_sigma=0.01, callback=lambda k, x, r: ours.append(x.clone()))
    init = (x0, torch.zeros_like(x0)) if name == "admm" else (x0, x0)
    model = optim_builder(
        iteration=iteration, prior=PnP(denoiser=denoiser), data_fidelity=L2(), max_iter=6, early_stop=False,
        params_algo={"stepsize": stepsizes, "g_param": sigmas, "lambda": 1.0, "beta": 1.0}, custom_init=init,
    )
    theirs = []
    model(y, physics, compute_metrics=False)  # warm path check (runs all iterations)
    model.custom_init = init
    x = model.init_iterate_fn(y, physics)
    for k in range(6):
        x = model.fixed_point.iterator(x, model.update_data_fidelity_fn(k), model.update_prior_fn(k), model.update_params_fn(k), y, physics)
        theirs.append(x["est"][0])
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert torch.allclose(a, b, atol=1e-10), f"iteration {k} differs by {(a - b).abs().max():.2e}"


def test_schedule_is_dpir():
    """sigma_k log-spaced from 49/255 to the noise level; gamma_k = sigma_k^2 / (0.23 sigma_n^2)."""
    config = PnPConfig(iterations=8, sigma_start=49 / 255, lam=0.23)
    sigmas = torch.tensor(config.sigmas(0.05))
    assert sigmas[0] == pytest.approx(49 / 255) and sigmas[-1] == pytest.approx(0.05)
    ratios = sigmas[1:] / sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    assert config.stepsizes(0.05)[3] == pytest.approx(sigmas[3].item() ** 2 / (0.23 * 0.05**2))
    assert config.stepsizes(0.0)[0] == pytest.approx((49 / 255) ** 2 / (0.23 * 0.01**2)), "noise floor 0.01 as DPIR"


def test_early_stopping_and_trace():
    physics, y = problem("sr2")
    result = solvers.build("drs", iterations=500, sigma_start=SIGMA, sigma_end=SIGMA, stepsize=GAMMA, tol=1e-6).solve(
        y, physics, TikhonovDenoiser(), physics.A_adjoint(y), ground_truth=None
    )
    assert result.stopped_early and len(result.trace) < 500
    assert result.trace[-1].residual < 1e-6 <= result.trace[-2].residual
    assert all(r.denoiser_seconds <= r.seconds for r in result.trace)


def test_trace_psnr_is_the_metric_of_each_iterate():
    """With a ground truth, each trace record holds pnprgm's PSNR of that iterate; a batch counts as one image."""
    physics, y = problem("sr2")
    truth = torch.rand((1, *SHAPE), generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # problem's x
    iterates: list[torch.Tensor] = []
    solver = solvers.build("drs", iterations=4, sigma_start=SIGMA, sigma_end=SIGMA, stepsize=GAMMA)
    result = solver.solve(y, physics, TikhonovDenoiser(), physics.A_adjoint(y), ground_truth=truth,
                          callback=lambda k, x, record: iterates.append(x.clone()))
    assert [r.psnr for r in result.trace] == pytest.approx([float(psnr(x, truth)) for x in iterates], abs=1e-9)
    assert len({round(r.psnr, 6) for r in result.trace}) == 4  # every iterate scored, not one value repeated
    pair = solver.solve(torch.cat([y, y]), physics, TikhonovDenoiser(), physics.A_adjoint(torch.cat([y, y])),
                        ground_truth=torch.cat([truth, truth]))
    assert [r.psnr for r in pair.trace] == pytest.approx([r.psnr for r in result.trace], abs=1e-9)


def test_rgm_drs_is_relaxed_stochastic_drs():
    """One RGM-DRS iteration with alpha = 1 and a deterministic denoiser is DRS with g first."""
    physics, y = problem("sr2")
    denoiser = TikhonovDenoiser()
    x0 = physics.A_adjoint(y)
    solver = solvers.build("rgm-drs", iterations=1, alpha=1.0, stepsize=GAMMA, levels=1, noise_scale=0.0, level_sigmas=(SIGMA,))
    result = solver.solve(y, physics, denoiser, x0)
    u = denoiser(x0, SIGMA)
    v = physics.prox_l2(2 * u - x0, y, GAMMA)
    assert torch.allclose(result.x, x0 + v - u, atol=1e-12)


def test_rgm_drs_is_seeded():
    physics, y = problem("sr2")
    solver = solvers.build("rgm-drs", iterations=3)
    runs = [solver.solve(y, physics, TikhonovDenoiser(), physics.A_adjoint(y), generator=torch.Generator().manual_seed(s)).x for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("name", solvers.registry.names())
def test_unknown_parameter_is_a_one_line_error(name):
    from pnprgm.errors import UserError

    with pytest.raises(UserError, match="unknown parameter 'iters'.*valid: iterations"):
        solvers.build(name, iters=3)


@pytest.mark.parametrize("rescale", [True, False])
def test_admm_rescaled_dual_keeps_the_map_solution_under_a_changing_schedule(rescale):
    """DPIR's rule keeps sigma_k^2 / gamma_k constant, so the MAP x* (with Tikhonov prior) and its dual
    z_k = -gamma_k grad f(x*) are a fixed point of every iteration of ADMM with the dual rescaled; without the
    rescaling the first change of gamma moves the iterate away from x*."""
    physics, y = problem("blur:gaussian,sigma=1")
    config = {"iterations": 4, "sigma_start": 0.3, "sigma_end": 0.05, "lam": 0.23, "rescale_dual": rescale}
    solver = solvers.build("admm", config)
    sigmas, gammas = solver.config.sigmas(0.01), solver.config.stepsizes(0.01)
    weight = sigmas[0] ** 2 / gammas[0]
    A, L = dense_matrix(physics.A, SHAPE), dense_matrix(laplacian, SHAPE)
    x_map = torch.linalg.solve(A.T @ A + weight * L, A.T @ y.flatten()).view(1, *SHAPE)
    gradient = physics.A_adjoint(physics.A(x_map) - y)
    state = {"x": x_map, "z": -gammas[0] * gradient, "gamma": gammas[0]}
    denoiser = TikhonovDenoiser()
    for k in range(1, 4):
        state = solver.step(state, k, y, physics, denoiser, sigma=sigmas[k], stepsize=gammas[k], generator=None)
    moved = (state["x"] - x_map).norm() / x_map.norm()
    assert (moved < 1e-8) if rescale else (moved > 1e-3), f"relative move {moved:.2e}"


@pytest.mark.parametrize("name", ["drs", "admm", "hqs"])
def test_strength_is_a_scaled_schedule_and_lam(name):
    """strength c: the same iterates as sigma_start, sigma_end times c and lam times c^2 (gamma_k unchanged),
    and different ones from strength 1; the trace records the schedule's level sigma_k (the denoiser receives
    c sigma_k from the pipeline)."""
    physics, y = problem("blur:gaussian,sigma=1")
    start, end, lam, c = 0.2, 0.02, 0.23, 0.8

    def run(**params):
        algorithm = configure(name, dict(iterations=6, **params))
        return algorithm.run(y, physics, TikhonovDenoiser(), physics.A_adjoint(y), noise_sigma=0.01)

    scaled = run(sigma_start=start, sigma_end=end, lam=lam, strength=c)
    moved = run(sigma_start=c * start, sigma_end=c * end, lam=lam * c**2)
    torch.testing.assert_close(scaled.x, moved.x)
    assert [c * r.sigma for r in scaled.trace] == pytest.approx([r.sigma for r in moved.trace])
    assert [r.stepsize for r in scaled.trace] == pytest.approx([r.stepsize for r in moved.trace])
    assert not torch.allclose(run(sigma_start=start, sigma_end=end, lam=lam).x, scaled.x)
    with pytest.raises(UserError, match="strength must be > 0"):
        configure(name, {"strength": 0})


@pytest.mark.parametrize("values,problem", [
    ({"iterations": 100_000_000_000}, "iterations"), ({"iterations": 0}, "iterations"),
    ({"relaxation": 1e10}, "relaxation"), ({"relaxation": float("nan")}, "relaxation"),
    ({"sigma_start": 1e308}, "sigma_start"), ({"sigma_start": 0.0}, "sigma_start"),
    ({"sigma_end": float("inf")}, "sigma_end"), ({"sigma_min": 2.0}, "sigma_min"), ({"tol": float("nan")}, "tol"),
    ({"sigma_start": 1e-300}, "sigma_start"), ({"sigma_end": 1e-300}, "sigma_end"), ({"lam": 1e300}, "lam"),
    ({"lam": 1e-300}, "lam"),
])
def test_solver_settings_that_cannot_work_are_refused_by_name(values, problem):
    """Values that would exhaust memory (a list per iteration), overflow or diverge to NaN fail before solving."""
    with pytest.raises(ValueError, match=problem):
        PnPConfig(**values)
    PnPConfig(iterations=10_000, relaxation=2.0, sigma_start=1.0)  # the bounds themselves are allowed
    extreme = PnPConfig(sigma_start=1e-6, sigma_end=1e-6, lam=1e8)
    assert all(0 < gamma < float("inf") for gamma in extreme.stepsizes(0.0) + PnPConfig(lam=1e-8).stepsizes(1.0))
