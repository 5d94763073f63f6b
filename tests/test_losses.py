import math

import torch
import torch.nn.functional as F

from vaekit.models.losses import kl_divergence, reconstruction_nll, vae_loss


def test_bce_from_logits_matches_bce_on_probabilities_and_is_summed_per_image():
    logits = torch.randn(4, 1, 5, 5)
    target = torch.rand(4, 1, 5, 5)
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="none").sum((1, 2, 3))
    assert torch.allclose(reconstruction_nll(logits, target), expected, atol=1e-4)


def test_bce_is_finite_for_saturated_logits():
    logits = torch.tensor([[[[200.0, -200.0]]]])
    target = torch.tensor([[[[0.0, 1.0]]]])
    value = reconstruction_nll(logits, target)
    assert torch.isfinite(value).all() and value.item() > 300


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    assert kl_divergence(torch.zeros(3, 2), torch.zeros(3, 2)).abs().max() == 0
    mean, log_var = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, -1.0]])
    expected = sum(0.5 * (math.exp(lv) + m**2 - 1 - lv) for m, lv in zip([1.0, -2.0], [0.5, -1.0]))
    assert math.isclose(kl_divergence(mean, log_var).item(), expected, rel_tol=1e-6)


def test_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mean, log_var = torch.tensor([0.7, -0.3]), torch.tensor([-0.4, 0.2])
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(1).mean().item()
    assert abs(kl_divergence(mean[None], log_var[None]).item() - monte_carlo) < 0.01


def test_loss_is_recon_plus_beta_kl_averaged_over_the_batch():
    logits, target = torch.randn(6, 1, 4, 4), torch.rand(6, 1, 4, 4)
    mean, log_var = torch.randn(6, 3), torch.randn(6, 3)
    terms = vae_loss(logits, target, mean, log_var, beta=3.0)
    assert torch.isclose(terms.recon, reconstruction_nll(logits, target).mean())
    assert torch.isclose(terms.kl, kl_divergence(mean, log_var).mean())
    assert torch.isclose(terms.loss, terms.recon + 3.0 * terms.kl)


def test_gaussian_likelihood_is_a_normalised_density():
    target = torch.full((1, 1, 1, 1), 0.25)
    logits = torch.logit(torch.full((1, 1, 1, 1), 0.25))
    sigma = 0.1
    # At the mean, -log N(x; x, sigma^2) = log(sigma * sqrt(2 pi)).
    assert math.isclose(reconstruction_nll(logits, target, "gaussian", sigma).item(),
                        math.log(sigma * math.sqrt(2 * math.pi)), rel_tol=1e-5)
