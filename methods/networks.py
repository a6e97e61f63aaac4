"""Small networks a method builds and owns beside the solver (a VAE generator, autoencoder
gates). They sit in methods/ because methods may not import runner/ (the layering test); the
solver networks a user picks with model=... stay in runner/models/."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MlpVAE(nn.Module):
    """A fully connected VAE on flat images in [0, 1] (Avalanche's MlpVAE: MLP encoder to a
    Gaussian latent, MLP decoder with a sigmoid output)."""

    def __init__(self, shape: tuple[int, ...], hidden: int = 400, latent_dim: int = 16) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.latent_dim = latent_dim
        width = math.prod(shape)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()
        )
        self.to_mean = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, width),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (in [0, 1], the input's shape), mean and log-variance of q(z|x)."""
        hidden = self.encoder(x)
        mean, logvar = self.to_mean(hidden), self.to_logvar(hidden)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        return self.decode(z), mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(len(z), *self.shape)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n images in [0, 1] decoded from the prior, in eval mode (BatchNorm statistics)."""
        was_training = self.training
        self.eval()
        device = self.to_mean.weight.device
        images = self.decode(torch.randn(n, self.latent_dim, device=device))
        self.train(was_training)
        return images


def vae_loss(
    reconstruction: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy (summed over pixels) + KL(q(z|x) ‖ N(0, I)), averaged over the batch
    (Avalanche's VAE_loss, per sample)."""
    bce = F.binary_cross_entropy(reconstruction, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp())
    return (bce + kld) / len(x)


class GateAutoencoder(nn.Module):
    """Expert Gate's undercomplete autoencoder on flat inputs: sigmoid code, linear decoder
    (Aljundi et al. use one hidden layer on pre-trained features)."""

    def __init__(self, width: int, code: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(width, code), nn.Sigmoid())
        self.decoder = nn.Linear(code, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared reconstruction error."""
        return (self(x) - x.flatten(1)).pow(2).mean(1)
