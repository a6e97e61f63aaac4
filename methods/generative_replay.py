"""mode=generative_replay: Deep Generative Replay (Shin et al., NeurIPS 2017), as Avalanche's
GenerativeReplay: a VAE learns the inputs seen so far; the solver trains on the new task plus
samples of the previous VAE labelled by the previous solver (both frozen at the task's end)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import (
    METHODS,
    Method,
    MethodContext,
    TrainBatch,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.functional import frozen_copy, mixed_cross_entropy, teacher_from_state
from rainbow_runner.methods.networks import MlpVAE, vae_loss


@METHODS.register("generative_replay")
class GenerativeReplay(Method):
    """Each step appends generated rows to the batch: images sampled from the previous task's
    VAE, labelled by the argmax of the previous task's solver, and weighted by replay_weight in
    the mean CE over all rows (1 = Avalanche's plain concatenation). The VAE trains on the
    task's images plus as many images of its own previous copy: offline, generator_epochs
    epochs after the task; online, generator_epochs steps on each incoming batch (one pass).
    No episodic memory: the VAE is the method's state.
    """

    uses_memory = False
    needs_task_boundaries = True  # the labelling solver and the VAE are frozen at task ends

    def __init__(
        self,
        context: MethodContext,
        generator_hidden: int = 400,
        latent_dim: int = 16,
        generator_epochs: int = 10,
        generator_lr: float = 0.001,
        replay_weight: float = 1.0,
        increasing_replay_size: bool = False,
    ) -> None:
        super().__init__(context)
        for key, value in (
            ("generator_hidden", generator_hidden),
            ("latent_dim", latent_dim),
            ("generator_epochs", generator_epochs),
        ):
            if value < 1:
                raise ValueError(f"mode.{key}={value}: generative_replay needs a positive integer.")
        if generator_lr <= 0 or replay_weight < 0:
            raise ValueError(
                f"mode.generator_lr={generator_lr}, mode.replay_weight={replay_weight}: "
                "generative_replay needs generator_lr > 0 and replay_weight >= 0."
            )
        self.shape = tuple(context.fetch_images(torch.zeros(1, dtype=torch.long)).shape[1:])
        self.vae = MlpVAE(self.shape, generator_hidden, latent_dim).to(context.device)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=generator_lr)
        self.generator_epochs = generator_epochs
        self.replay_weight = float(replay_weight)
        self.increasing_replay_size = increasing_replay_size
        self.old_vae: MlpVAE | None = None
        self.old_solver: torch.nn.Module | None = None

    # --- the solver ---------------------------------------------------------------------------

    def replay_size(self) -> int:
        """Generated rows per step: mem_batchsize, times the earlier tasks when increasing."""
        size = self.context.settings.mem_batchsize
        return size * max(self.context.task_id, 1) if self.increasing_replay_size else size

    @torch.no_grad()
    def generated_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n generated inputs (normalised as the model's input) and the old solver's labels."""
        images = (self.old_vae.sample(n) * 255).round().to(torch.uint8)
        x = self.context.normalize(images)
        return x, self.old_solver(x).argmax(1)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.old_vae is None:
            return super().loss(batch)
        x_gen, y_gen = self.generated_batch(self.replay_size())
        logits = self.model(torch.cat([batch.x, x_gen.to(batch.x.dtype)]))
        n_stream, n_gen = len(batch.y), len(y_gen)
        stream_logits = logits[:n_stream]
        weight = self.replay_weight * n_gen
        stream_loss = mixed_cross_entropy(stream_logits, batch)
        replay_loss = F.cross_entropy(logits[n_stream:], y_gen)
        loss = (n_stream * stream_loss + weight * replay_loss) / (n_stream + weight)
        return loss, stream_logits

    # --- the generator ------------------------------------------------------------------------

    def generator_step(self, images: torch.Tensor) -> float:
        """One VAE step on real uint8 images plus as many from the previous VAE."""
        x = images.float() / 255
        if self.old_vae is not None:
            x = torch.cat([x, self.old_vae.sample(len(x))])
        self.vae.train()
        reconstruction, mean, logvar = self.vae(x)
        loss = vae_loss(reconstruction, x, mean, logvar)
        self.vae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_optimizer.step()
        return loss.item()

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        """Online: the VAE learns from each incoming batch as it passes."""
        images = self.context.fetch_images(stream_indices)
        if len(images) > 1:  # BatchNorm needs two rows
            for _ in range(self.generator_epochs):
                self.generator_step(images)

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """Offline: generator_epochs epochs of the VAE over the task's images."""
        if streamed:
            return
        batchsize = self.context.settings.batchsize
        generator = torch.Generator().manual_seed(self.context.settings.seed + task_id)
        for epoch in range(self.generator_epochs):
            order = task_indices[torch.randperm(len(task_indices), generator=generator)]
            losses = [
                self.generator_step(self.context.fetch_images(chunk))
                for chunk in order.split(batchsize)
                if len(chunk) > 1
            ]
            step = task_id * self.generator_epochs + epoch
            self.context.writer.scalar("generator/loss", sum(losses) / len(losses), step)

    def after_task(self, task_id: int) -> None:
        self.old_vae = frozen_copy(self.vae)
        self.old_solver = frozen_copy(self.model)

    # --- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = with_prefix("vae.", self.vae.state_dict())
        if self.old_vae is not None:
            state |= with_prefix("old_vae.", self.old_vae.state_dict())
            state |= with_prefix("old_solver.", self.old_solver.state_dict())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.vae.load_state_dict(without_prefix(state, "vae."))
        saved_vae = without_prefix(state, "old_vae.")
        if saved_vae:
            self.old_vae = frozen_copy(self.vae)
            self.old_vae.load_state_dict(saved_vae)
            self.old_solver = teacher_from_state(self.model, without_prefix(state, "old_solver."))
