"""CL methods, registered by the names users type as mode=..."""

from methods import er, finetune, joint  # noqa: F401  (registration)
from methods.base import METHODS, Method, mixed_cross_entropy

__all__ = ["METHODS", "Method", "mixed_cross_entropy"]
