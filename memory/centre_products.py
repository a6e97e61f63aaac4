"""Squared distances of a group's members to centres, for k-means: one batched product per
assignment, in bfloat16 where the hardware multiplies it natively, and a bound on its rounding
(the member kept for a centre is then checked in float32: memory/kmeans.py)."""

from __future__ import annotations

import torch

# Feature values per block of rows while the members are centred: half a MB of float32 stays
# in L2 through the block's passes (one padded float32 copy instead costs ~3x as long).
ROW_BLOCK = 128 * 1024
# Row width (features, then the four columns that add ||c||^2 and ||x||^2) rounded up to a
# multiple of this: aligned rows multiply ~1.4x faster (AMX tiles) than 400 + 4.
PRODUCT_ALIGN = 32
# Norm term of a centre beyond its group's quota: never any member's nearest.
DEAD_CENTRE = 1e30
# Integers of each product dtype's width: min with indices over a distance's bits.
_BITS = {torch.bfloat16: torch.int16, torch.float32: torch.int32}


def product_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where it is multiplied natively (CUDA, CPUs with AVX512-BF16 or AMX: ~8x faster
    than float32 products), float32 elsewhere (an emulated bfloat16 product is slower)."""
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float32
    native = device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()
    return torch.bfloat16 if native else torch.float32


class CentreProducts:
    """The members, centred on an estimate of their group's mean (distances do not change, the
    product's rounding shrinks with the norms), as rows [x, 1, 1, ||x||^2 rounded, what it
    rounded off, 0...] in the product's dtype; their float32 ||x||^2; one reused
    (groups, members, k) product buffer (a fresh block that size costs page faults every
    time)."""

    def __init__(
        self,
        features: torch.Tensor,
        source: torch.Tensor,
        valid: torch.Tensor,
        sample: torch.Tensor | None,
        dtype: torch.dtype,
        k: int,
    ) -> None:
        n_groups, width = source.shape
        dim = features.shape[1]
        # The seeding sample's mean (the exact one when it holds every member).
        picked = source if sample is None else source.gather(1, sample)
        weight = (valid if sample is None else valid.gather(1, sample)).float()
        members = features.index_select(0, picked.flatten()).view(*picked.shape, dim)
        sums = torch.bmm(weight[:, None], members).squeeze(1)
        self.means = sums / weight.sum(1, keepdim=True).clamp(min=1)
        padded = -(-(dim + 4) // PRODUCT_ALIGN) * PRODUCT_ALIGN
        self.rows = features.new_empty(n_groups, width, padded, dtype=dtype)
        self.rows[..., dim : dim + 2] = 1
        self.rows[..., dim + 4 :] = 0
        self.squared = features.new_empty(n_groups, width)
        step = max(1, ROW_BLOCK // (n_groups * dim))
        scratch = features.new_empty(n_groups * min(step, width) * dim)
        for start in range(0, width, step):  # blocks of slots, all groups at once
            block = source[:, start : start + step]
            members = scratch[: block.numel() * dim].view(block.numel(), dim)
            torch.index_select(features, 0, block.flatten(), out=members)
            members = members.view(*block.shape, dim).sub_(self.means[:, None])
            squared = self.squared[:, start : start + step]
            torch.linalg.vector_norm(members, dim=2, out=squared).square_()
            self.rows[:, start : start + step, :dim] = members
            _split(squared, self.rows[:, start : start + step, dim + 2 : dim + 4])
        self.buffer = self.rows.new_empty(source.numel() * k)

    def subset(self, slots: torch.Tensor) -> CentreProducts:
        """The same space restricted to these member slots (groups, m)."""
        part = object.__new__(CentreProducts)
        part.means, part.buffer = self.means, self.buffer
        part.rows, part.squared = self.member_rows(slots), self.squared.gather(1, slots)
        return part

    def member_rows(self, slots: torch.Tensor) -> torch.Tensor:
        """A copy of the rows at these member slots (groups, m)."""
        n_groups, width, padded = self.rows.shape
        flat = (slots + torch.arange(n_groups, device=slots.device)[:, None] * width).flatten()
        return self.rows.view(-1, padded).index_select(0, flat).view(*slots.shape, padded)

    def nearest(
        self, centres: torch.Tensor, live: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's squared distance to its nearest centre (a centre beyond its group's
        quota never) and which centre: [x, 1, 1, ||x||^2 split] . [-2c, ||c||^2 split, 1, 1]."""
        n_groups, k, dim = centres.shape
        centred = centres - self.means[:, None]
        norms = torch.linalg.vector_norm(centred, dim=2).square_().masked_fill_(~live, DEAD_CENTRE)
        side = self.rows.new_empty(n_groups, k, self.rows.shape[2])
        torch.mul(centred, -2, out=side[..., :dim])
        _split(norms, side[..., dim : dim + 2])
        side[..., dim + 2 : dim + 4] = 1
        side[..., dim + 4 :] = 0
        return self._closest(side, True)

    def nearest_members(
        self, slots: torch.Tensor, dead: torch.Tensor, index: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`nearest` for centres at these member slots (groups, m); `dead` marks centres
        beyond the quota; the centre's index only if `index`."""
        dim = self.means.shape[1]
        side = self._member_sides(slots)
        side[..., dim].masked_fill_(dead, DEAD_CENTRE)
        side[..., dim + 1].masked_fill_(dead, 0)
        return self._closest(side, index)

    def pairwise(self) -> torch.Tensor:
        """Every member's squared distance to every other of its group, (groups, m, m) in the
        product's dtype: one product instead of one per seeding round."""
        n_groups, width, _ = self.rows.shape
        every = torch.arange(width, device=self.rows.device).expand(n_groups, width)
        return torch.bmm(self.rows, self._member_sides(every).transpose(1, 2))

    def _member_sides(self, slots: torch.Tensor) -> torch.Tensor:
        """The product's centre side [-2x, ||x||^2 split, 1, 1] of the members at these slots,
        from their rows [x, 1, 1, ||x||^2 split]: the same values as from their features."""
        dim = self.means.shape[1]
        side = self.member_rows(slots)
        side[..., :dim] *= -2
        side[..., dim : dim + 4] = side[..., dim : dim + 4].roll(2, dims=-1)
        return side

    def _closest(self, side: torch.Tensor, index: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Min over the product with these centre sides, in the reused buffer.

        The distances are non-negative up to rounding, so their bits, read as integers of
        the same width, order as the values do (torch's min with indices is ~2x faster on
        int16 than on bfloat16); a negative rounding of a distance near 0 ranks first.
        """
        n_groups, k, _ = side.shape
        out = self.buffer[: self.rows.shape[1] * n_groups * k].view(n_groups, -1, k)
        torch.bmm(self.rows, side.transpose(1, 2), out=out)
        bits = out.view(_BITS[out.dtype])
        found, nearest = bits.min(2) if index else (bits.amin(2), None)
        return found.view(out.dtype).float(), nearest

    def rounding_bound(
        self, centres: torch.Tensor, assign: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """A bound on the error of each member's `distance` (from `nearest`) to its centre,
        twice what the rounding can reach.

        The inputs x and -2c are rounded to the dtype (epsilon/2 each, so 2 x.c, at most
        2 |x| |c| by Cauchy-Schwarz, moves by at most epsilon times that), the norms enter
        split, every term is summed in float32 (as are ||x||^2 and ||c||^2), and the result
        is rounded to the dtype. A GPU may also round the partial sums of a split reduction to
        the dtype: there every term counts at epsilon.
        """
        dtype, single, dim = self.rows.dtype, torch.finfo(torch.float32), self.means.shape[1]
        eps = torch.finfo(dtype).eps
        norms = (centres - self.means[:, None]).square().sum(2).gather(1, assign)
        cross = 2 * (self.squared * norms).sqrt()
        size = cross + norms + self.squared + distance.abs()  # every term's magnitude
        bound = eps * (cross + distance.abs()) + (4 + dim) * (single.eps * size + single.tiny)
        if self.rows.is_cuda:
            bound += eps * size
        return 2 * bound


def _split(values: torch.Tensor, out: torch.Tensor) -> None:
    """values (float32) as two columns of out's dtype: the rounded value, what it rounded off."""
    out[..., 0] = values
    out[..., 1] = values - out[..., 0].float()
