"""The networks methods own: the MLP VAE of generative replay, Expert Gate's autoencoders."""

from __future__ import annotations

import torch

from rainbow_runner.methods.networks import GateAutoencoder, MlpVAE, vae_loss


def test_the_vae_samples_images_in_the_unit_range_and_its_loss_falls_with_training():
    torch.manual_seed(0)
    vae = MlpVAE((1, 8, 8), hidden=32, latent_dim=4)
    x = (torch.rand(64, 1, 8, 8) > 0.5).float()
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        reconstruction, mean, logvar = vae(x)
        loss = vae_loss(reconstruction, x, mean, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert reconstruction.shape == x.shape
    assert losses[-1] < 0.9 * losses[0]
    samples = vae.sample(5)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert vae.training  # sampling restores the mode it found


def test_vae_loss_is_the_summed_bce_plus_kl_per_sample():
    x = torch.tensor([[1.0, 0.0]])
    reconstruction = torch.tensor([[0.5, 0.5]])
    mean, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    expected = 2 * torch.log(torch.tensor(2.0)) + 0.5  # BCE 2·ln 2, KL ½·μ²
    assert torch.isclose(vae_loss(reconstruction, x, mean, logvar), expected)


def test_the_gate_error_is_the_mean_squared_reconstruction_error_per_sample():
    gate = GateAutoencoder(3, code=2)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(gate.errors(x), (gate(x) - x).pow(2).mean(1))
