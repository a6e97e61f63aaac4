"""mode=slda: Deep Streaming LDA (Hayes & Kanan, CVPRW 2020): a frozen backbone and a linear
discriminant head fitted in closed form from running class means and a shared covariance."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.functional import add_class_statistics, lda_parameters


@METHODS.register("slda")
class StreamingLDA(Method):
    """No SGD: each training batch updates per-class means of the backbone's features and the
    pooled within-class covariance Σ; scores are f·Wᵀ + b, W = Λμ, b = −½ diag(μᵀΛμ),
    Λ = ((1 − ε)Σ + εI)⁻¹, over the exposed classes seen so far. The backbone stays as it
    was built (random init unless the model config loads weights) and sees un-augmented inputs.
    """

    uses_memory = False

    def __init__(
        self,
        context: MethodContext,
        shrinkage: float = 1e-4,
        streaming_update_sigma: bool = True,
    ) -> None:
        super().__init__(context)
        if not 0.0 < shrinkage <= 1.0:
            raise ValueError(f"mode.shrinkage={shrinkage}: SLDA needs 0 < shrinkage <= 1.")
        self.shrinkage = float(shrinkage)
        self.streaming_update_sigma = bool(streaming_update_sigma)
        n_classes, width = context.split.n_classes, context.model.feature_dim
        stats = {"dtype": torch.float64, "device": context.device}  # exact sums over 1e5+ rows
        self.means = torch.zeros(n_classes, width, **stats)
        self.counts = torch.zeros(n_classes, **stats)
        self.scatter = torch.zeros(width, width, **stats)  # stays 0 when Σ is fixed (Σ = I)
        self.n_seen = 0  # samples added, on the host: no device sync per step
        self.classifier: tuple[torch.Tensor, torch.Tensor] | None = None  # W, b; None: stale

    def prepare_model(self) -> None:
        """Freeze everything, the grown head included: nothing here is trained by gradients."""
        self.model.requires_grad_(False)

    def parameter_groups(self) -> list:
        return []  # no optimizer: update() is the closed-form statistics

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the batch to the statistics; the loss is CE of the updated LDA's scores on it."""
        context = self.context
        features = self.features(context.inputs(batch.indices))
        labels = context.labels(batch.indices)
        scatter = self.scatter if self.streaming_update_sigma else None
        self.means, self.counts, scatter = add_class_statistics(
            self.means, self.counts, scatter, features, labels
        )
        self.scatter = self.scatter if scatter is None else scatter
        self.n_seen += len(labels)
        self.classifier = None
        logits = self.scores(features)
        return F.cross_entropy(logits, labels), logits

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features in eval mode (BatchNorm statistics never move)."""
        self.model.eval()
        with self.context.precision.autocast():
            return self.model.features(x).double()

    def covariance(self) -> torch.Tensor:
        """Σ: the pooled within-class covariance (biased, /N); I before any data or when fixed."""
        scatter = self.scatter
        if not self.streaming_update_sigma or self.n_seen == 0:
            return torch.eye(len(scatter), dtype=scatter.dtype, device=scatter.device)
        return scatter / self.n_seen

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """LDA scores over the exposed classes; −inf for a class with no samples yet."""
        if self.classifier is None:
            weight, bias = lda_parameters(self.means, self.covariance(), self.shrinkage)
            self.classifier = (weight, bias.masked_fill(self.counts == 0, float("-inf")))
        weight, bias = self.classifier
        n_exposed = self.context.n_exposed
        return (features.double() @ weight[:n_exposed].T + bias[:n_exposed]).float()

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_seen == 0:  # nothing fitted yet (the untrained model's evaluation)
            return self.model(x)
        return self.scores(self.features(x))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means, "counts": self.counts, "scatter": self.scatter}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.means, self.counts = state["means"].to(device), state["counts"].to(device)
        self.scatter = state["scatter"].to(device)
        self.n_seen = int(self.counts.sum().item())
        self.classifier = None
