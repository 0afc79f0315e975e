"""danlab's one error type for bad input, and the validators every module uses."""

import math


class DanlabError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""


def check(condition: bool, message: str) -> None:
    """Raise DanlabError(message) unless condition holds."""
    if not condition:
        raise DanlabError(message)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value: float) -> None:
    check(_is_number(value) and value > 0,
          f"{name}={value!r} is not allowed: it must be a finite number > 0")


def check_non_negative(name: str, value: float) -> None:
    check(_is_number(value) and value >= 0,
          f"{name}={value!r} is not allowed: it must be a finite number >= 0")


def check_int_at_least(name: str, value: int, low: int) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
          f"{name}={value!r} is not allowed: it must be an integer >= {low}")


def check_choice(name: str, value: str, allowed) -> None:
    check(value in allowed, f"{name}={value!r} is not allowed: choose one of {', '.join(allowed)}")


def check_tensor(name: str, value, like=None, dims: int | None = None) -> None:
    """A tensor argument of the API: a torch.Tensor, floating point, with `dims` dimensions at
    least, on the device and of the dtype of `like` if given (one line instead of a torch
    traceback)."""
    import torch

    check(isinstance(value, torch.Tensor),
          f"{name} must be a torch.Tensor, got {type(value).__name__}")
    check(value.is_floating_point(), f"{name} must be a floating-point tensor, got {value.dtype}")
    if dims is not None:
        check(value.dim() >= dims, f"{name} must have at least {dims} dimensions, got shape "
                                   f"{tuple(value.shape)}")
    if like is not None:
        check(value.dtype == like.dtype, f"{name} has dtype {value.dtype} but the model / other "
                                         f"inputs are {like.dtype}: convert it with .to()")
        check(value.device == like.device, f"{name} is on {value.device} but the other inputs "
                                           f"are on {like.device}: move it with .to()")
