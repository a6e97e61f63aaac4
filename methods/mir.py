"""mode=mir: Maximally Interfered Retrieval (Aljundi et al., NeurIPS 2019): experience replay
that replays the memory samples the coming update would hurt most."""

from __future__ import annotations

import torch
from torch.func import functional_call
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, NO_ROWS, MethodContext
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.gradients import most_interfered, virtual_sgd_parameters


@METHODS.register("mir")
class MaximallyInterferedRetrieval(ExperienceReplay):
    """Each step draws `subsample` memory candidates, takes a virtual SGD step on the incoming
    batch (θ' = θ − lr·∇L_stream(θ), the optimizer's current lr) and replays the mem_batchsize
    candidates whose loss rises most from θ to θ'. The choice runs in eval mode on un-augmented
    inputs, θ' lives only in functional_call: weights, .grad and BatchNorm statistics stay.
    """

    stepwise_draws = True  # the choice depends on the model as it is right before the step

    def __init__(self, context: MethodContext, subsample: int = 50) -> None:
        super().__init__(context)
        if subsample < 1:
            raise ValueError(f"mode.subsample={subsample}: MIR needs at least one candidate.")
        self.subsample = max(int(subsample), self.mem_batchsize)

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if self.concat or len(self.memory) == 0:
            return NO_ROWS
        candidates = self.memory.sample(self.subsample)
        if len(candidates) <= self.mem_batchsize:
            return candidates
        before, after = self.candidate_losses(stream_indices, candidates)
        return candidates[most_interfered(before, after, self.mem_batchsize).cpu()]

    def candidate_losses(
        self, stream_indices: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each candidate's CE at θ and at θ' (one forward for the stream batch and θ's losses:
        in eval mode rows do not interact)."""
        context, model = self.context, self.model
        n_stream = len(stream_indices)
        indices = torch.cat([stream_indices, candidates])
        x, y = context.inputs(indices), context.labels(indices)
        was_training = model.training
        model.eval()
        try:
            with context.precision.autocast():
                losses = F.cross_entropy(model(x), y, reduction="none")
            virtual = virtual_sgd_parameters(
                model, losses[:n_stream].mean(), context.optimizer.param_groups
            )
            with torch.no_grad(), context.precision.autocast():
                logits = functional_call(model, virtual, (x[n_stream:],))
                after = F.cross_entropy(logits, y[n_stream:], reduction="none")
        finally:
            model.train(was_training)
        return losses[n_stream:].detach().float(), after.float()
