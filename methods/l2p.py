"""mode=l2p: Learning to Prompt (Wang et al., CVPR 2022), as Avalanche's L2P: a pool of prompts
with learnable keys over a frozen Vision Transformer; only the prompts, keys and head train."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.functional import mixed_cross_entropy

TOKEN_MODEL = ("tokens", "encode", "features", "head")  # what a prompted model must offer
HEAD_TYPES = ("prompt", "token", "token+prompt")  # the head reads: prompt outputs, [CLS], both


def select_prompts(
    query: torch.Tensor, keys: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (N, top_k) of the keys most cosine-similar to each query, and the summed
    similarity of the chosen keys per row (the surrogate that pulls keys towards queries)."""
    similarity = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T
    chosen = similarity.detach().topk(top_k, dim=1).indices
    return chosen, similarity.gather(1, chosen).sum(1)


@METHODS.register("l2p")
class LearningToPrompt(Method):
    """Each input's query is the frozen ViT's [CLS] feature; the top_k prompts whose keys match
    it best (cosine) are inserted after [CLS]; the head reads the mean of the encoder's outputs
    at the prompt positions. Loss: CE (train_mask: over the current task's classes only) −
    sim_coefficient · the chosen keys' mean summed similarity. Rehearsal-free: no memory.
    """

    uses_memory = False

    def __init__(
        self,
        context: MethodContext,
        pool_size: int = 10,
        prompt_length: int = 5,
        top_k: int = 5,
        sim_coefficient: float = 0.1,
        train_mask: bool = True,
        head_type: str = "prompt",
    ) -> None:
        super().__init__(context)
        missing = [name for name in TOKEN_MODEL if not hasattr(context.model, name)]
        if missing:
            raise ValueError(
                f"mode=l2p prompts a Vision Transformer and needs a model with token access "
                f"(tokens, encode): model=vit_tiny or model=vit_b16 (with model.weights=PATH to "
                f"a local pretrained checkpoint), not {type(context.model).__name__}."
            )
        if not 1 <= top_k <= pool_size or prompt_length < 1:
            raise ValueError(
                f"mode.top_k={top_k}, mode.pool_size={pool_size}, "
                f"mode.prompt_length={prompt_length}: l2p needs 1 <= top_k <= pool_size and "
                "prompt_length >= 1."
            )
        if head_type not in HEAD_TYPES:
            raise ValueError(f"mode.head_type={head_type!r} is not one of {', '.join(HEAD_TYPES)}.")
        self.head_type = head_type
        width = context.model.feature_dim
        device = context.device
        # Avalanche's prompt_init="uniform" and prompt_key_init="uniform": U(-1, 1)
        self.prompts = nn.Parameter(torch.empty(pool_size, prompt_length, width, device=device))
        self.keys = nn.Parameter(torch.empty(pool_size, width, device=device))
        nn.init.uniform_(self.prompts, -1, 1)
        nn.init.uniform_(self.keys, -1, 1)
        self.top_k, self.sim_coefficient = top_k, float(sim_coefficient)
        self.train_mask = train_mask
        self.task_classes: tuple[int, torch.Tensor] | None = None

    def prepare_model(self) -> None:
        """Freeze the ViT (its weights, not its head) for good."""
        self.model.backbone.requires_grad_(False)

    def parameter_groups(self) -> list[nn.Parameter]:
        return [self.prompts, self.keys, *self.model.head.parameters()]

    def current_classes(self) -> torch.Tensor:
        """Labels of the current task's training samples (cached per task)."""
        task_id = self.context.task_id
        if self.task_classes is None or self.task_classes[0] != task_id:
            labels = self.context.train_labels[self.context.split.train_tasks[task_id]]
            self.task_classes = (task_id, labels.unique().to(self.context.device))
        return self.task_classes[1]

    def prompted(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits with the chosen prompts, and each row's summed key similarity."""
        model = self.model
        with torch.no_grad():
            query = model.features(x)
        chosen, similarity = select_prompts(query, self.keys, self.top_k)
        prompts = self.prompts[chosen].flatten(1, 2)  # (N, top_k · prompt_length, D)
        tokens = model.tokens(x)
        tokens = torch.cat([tokens[:, :1], prompts.to(tokens.dtype), tokens[:, 1:]], 1)
        outputs = model.encode(tokens)[:, : 1 + prompts.shape[1]]
        if self.head_type == "token":
            return model.head(outputs[:, 0]), similarity
        if self.head_type == "prompt":
            outputs = outputs[:, 1:]
        return model.head(outputs.mean(1)), similarity

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits, similarity = self.prompted(batch.x)
        trained = logits
        if self.train_mask:  # the task's classes, and any in the batch (task-free streams)
            classes = self.current_classes()
            allowed = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
            allowed[classes[classes < logits.shape[1]]] = True
            allowed[batch.y] = True
            if batch.y_mix is not None:
                allowed[batch.y_mix] = True
            trained = logits.masked_fill(~allowed, float("-inf"))
        loss = mixed_cross_entropy(trained, batch) - self.sim_coefficient * similarity.mean()
        return loss, logits

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.prompted(x)[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"prompts": self.prompts.detach(), "keys": self.keys.detach()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.prompts.copy_(state["prompts"])
            self.keys.copy_(state["keys"])
